"""Dump a running process from outside: seize every thread, read its state, write the image.

The image is ``image.json`` (everything but bulk data), ``pages.img`` with ``pages.crc``, and a
data file per descriptor or shared memory object that carries content.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import struct
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from crs.framework import CRSError
from crs.hookspecs import CheckpointOptions
from crs.snapshot import SnapshotWriter

from . import fds, memory, procfs, tracer
from ._native import lib
from .tracer import Injector, TraceError

IMAGE = "image.json"
PAGES = "pages.img"
CRCS = "pages.crc"
FORMAT = "pycrs-process-image 1"
SCRATCH = 64 * 1024
BLOCK_ALL = (1 << 64) - 1  # the kernel keeps SIGKILL and SIGSTOP out of any mask itself
RLIMITS = [getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")]


class DumpError(CRSError):
    """The process cannot be dumped; the message says why."""


def check_traceable(pid: int, parent_ok: bool = False) -> None:
    """Raise DumpError in one line when ``pid`` is gone, not ours, a zombie or already traced
    (or this tool's parent, unless ``parent_ok``: an MPI rank saved by the child it waits for)."""
    if pid <= 0 or not os.path.exists(f"/proc/{pid}"):
        raise DumpError(f"no process with PID {pid}")
    try:
        st = procfs.status(pid)
    except (FileNotFoundError, ProcessLookupError):
        raise DumpError(f"no process with PID {pid}") from None
    uid = int(st["Uid"].split()[0])
    if uid != os.getuid():
        raise DumpError(f"process {pid} belongs to another user (uid {uid})")
    if int(procfs.stat_field(pid, 9)) & 0x200000:  # PF_KTHREAD
        raise DumpError(f"process {pid} is a kernel thread")
    if st.get("State", "").startswith(("Z", "X")):
        raise DumpError(f"process {pid} has ended (zombie)")
    tracer_pid = int(st.get("TracerPid", "0"))
    if tracer_pid:
        raise DumpError(f"process {pid} is already traced by process {tracer_pid}")
    if pid == os.getpid() or (pid == os.getppid() and not parent_ok):
        raise DumpError(f"process {pid} is this tool or its parent")


@dataclass
class Seized:
    """The stopped threads, each with the signal mask it had: while we hold them every signal
    is blocked, so that one arriving meanwhile stays queued, siginfo and all, for the process
    to take once it goes on."""

    pid: int
    tids: list[int]
    group_stopped: bool
    masks: dict[int, int]


def seize_all(pid: int) -> Seized:
    """Seize and stop every thread; threads created meanwhile are caught by scanning again."""
    done: list[int] = []
    stopped = False
    while True:
        try:
            fresh = [t for t in procfs.threads(pid) if t not in done]
        except FileNotFoundError:
            fresh = []
        if not fresh:
            break
        for tid in fresh:
            ret = lib.blcr_seize(tid)
            if ret < 0:
                if tid != pid and ret == -3:  # ESRCH: the thread ended meanwhile
                    continue
                release(Seized(pid, done, stopped, {}), None)
                err = os.strerror(-ret)
                if ret == -1:  # EPERM
                    raise DumpError(f"process {pid} cannot be traced ({err}): not ours, "
                                    "protected, or already traced")
                raise DumpError(f"cannot seize thread {tid} of process {pid}: {err}")
            stopped |= ret == 1
            done.append(tid)
    if pid not in done:
        raise DumpError(f"no process with PID {pid}")
    seized = Seized(pid, sorted(done), stopped, {})
    try:
        for tid in seized.tids:
            seized.masks[tid] = tracer.get_sigmask(tid)
            tracer.check(lib.blcr_set_sigmask(tid, BLOCK_ALL), f"blocking signals of {tid}")
    except BaseException:
        release(seized, None)
        raise
    return seized


def release(s: Seized, regs: dict[int, tracer.Regs] | None, stop: bool = False) -> None:
    """Let every thread go, registers as they were; stopped if asked or if it was stopped."""
    for tid in s.tids:
        if regs and tid in regs:
            with suppress(TraceError):
                tracer.check(lib.blcr_set_regs(tid, regs[tid].resumed(image=False).pack()), "")
        if tid in s.masks:
            lib.blcr_set_sigmask(tid, s.masks[tid])
        lib.blcr_detach(tid, signal.SIGSTOP if (stop or s.group_stopped) and tid == s.pid else 0)


def syscall_instruction(pid: int, vmas: list[procfs.Vma]) -> int:
    """Address of a `syscall` instruction in the process: any 0f 05 in its vDSO."""
    for v in vmas:
        if v.path == "[vdso]":
            code = tracer.read_mem(pid, v.start, v.length)
            at = code.find(b"\x0f\x05")
            if at >= 0:
                return v.start + at
    raise DumpError(f"process {pid} has no vDSO to run system calls from")


def dump(pid: int, snapshot: SnapshotWriter, options: CheckpointOptions,
         omit: set[int] = frozenset(),  # type: ignore[assignment]
         parent_ok: bool = False) -> dict[str, float]:
    """Save ``pid`` into ``snapshot``; the process goes on, is stopped, or is left stopped for
    the caller to kill (``term``). Descriptors in ``omit`` are left out. ``parent_ok``: ``pid``
    may be this tool's parent (which then waits for the tool in its image). Returns timings in
    seconds."""
    check_traceable(pid, parent_ok)
    t0 = time.monotonic()
    seized = seize_all(pid)
    regs: dict[int, tracer.Regs] = {}
    try:
        for tid in seized.tids:
            regs[tid] = tracer.get_regs(tid)
        image = _read_process(pid, seized, regs)
        frozen_write_start = time.monotonic()
        _write(pid, image, snapshot, omit)
        t_pages = time.monotonic() - frozen_write_start
    except BaseException:
        release(seized, regs)
        raise
    release(seized, regs, stop=options.stop or options.term)
    frozen = time.monotonic() - t0
    return {"frozen": frozen, "pages": t_pages}


def _read_process(pid: int, seized: Seized, regs: dict[int, tracer.Regs]) -> dict[str, Any]:
    vmas = procfs.vmas(pid)
    inj = Injector(pid, syscall_instruction(pid, vmas))
    main = pid
    scratch = inj.call(main, "mmap", 0, SCRATCH, 3, 0x22, -1, 0)  # RW, PRIVATE|ANONYMOUS
    inj.scratch, inj.scratch_len = scratch, SCRATCH
    try:
        image: dict[str, Any] = {"format": FORMAT, "pid": pid}
        image["threads"] = [_read_thread(inj, tid, regs[tid], seized.masks[tid])
                            for tid in seized.tids]
        image["sigactions"] = _read_sigactions(inj, main)
        image["itimers"] = []
        for which in range(3):
            inj.call(main, "getitimer", which, scratch)
            image["itimers"].append(list(struct.unpack("4q", inj.get(32))))
        image["posix_timers"] = _read_posix_timers(inj, pid)
        image["brk"] = inj.call(main, "brk", 0)
        image["personality"] = inj.call(main, "personality", 0xFFFFFFFF)
        image["shared_pending"] = [s.hex() for s in tracer.peek_siginfo(main, shared=True)]
    finally:
        inj.call(main, "munmap", scratch, SCRATCH)
    st = procfs.status(pid)
    image["umask"] = int(st.get("Umask", "022"), 8)
    image["rlimits"] = [[r, *resource.prlimit(pid, r)] for r in RLIMITS]
    cwd = os.readlink(f"/proc/{pid}/cwd")
    if cwd.endswith(" (deleted)"):
        raise DumpError(f"process {pid} works in a deleted directory ({cwd})")
    image["cwd"] = cwd
    image["exe"] = os.readlink(f"/proc/{pid}/exe")
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        image["argv"] = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0")[:-1]]
    image["stopped"] = seized.group_stopped  # stopped (SIGSTOP) when it was saved
    image["mm"] = procfs.mm_fields(pid)
    image["pgid"], image["sid"] = int(procfs.stat_field(pid, 5)), int(procfs.stat_field(pid, 6))
    with open(f"/proc/{pid}/auxv", "rb") as f:
        image["auxv"] = f.read().hex()
    image["vmas"] = vmas  # turned into records by _write, which also reads the pages
    _own_ids(pid, image)
    return image


def _last(value: str) -> int:
    return int(value.split()[-1])


def _own_ids(pid: int, image: dict[str, Any]) -> None:
    """A process in a PID namespace below ours (one an ordinary user restored) is saved with
    the IDs it sees there: its PID, thread IDs, process group and session (the last of NSpid,
    NSpgid, NSsid), and the thread a POSIX timer signals."""
    st = procfs.status(pid)
    if len(st.get("NSpid", "").split()) < 2:
        return
    image["pid"] = _last(st["NSpid"])
    image["pgid"], image["sid"] = _last(st["NSpgid"]), _last(st["NSsid"])
    own = {}
    for t in image["threads"]:
        task = procfs.read_text(f"/proc/{pid}/task/{t['tid']}/status")
        own[t["tid"]] = _last(next(line for line in task.splitlines()
                                   if line.startswith("NSpid:")))
    for t in image["threads"]:
        t["tid"] = own[t["tid"]]
    for timer in image["posix_timers"]:
        timer["target"] = own.get(timer["target"], timer["target"])


def _read_thread(inj: Injector, tid: int, regs: tracer.Regs, mask: int) -> dict[str, Any]:
    inj.call(tid, "prctl", 40, inj.scratch)  # PR_GET_TID_ADDRESS
    tid_address = struct.unpack("Q", inj.get(8))[0]
    inj.call(tid, "sigaltstack", 0, inj.scratch)
    ss_sp, ss_flags, _pad, ss_size = struct.unpack("QiiQ", inj.get(24))
    with open(f"/proc/{inj.pid}/task/{tid}/comm", "rb") as f:
        comm = f.read().rstrip(b"\n")
    return {
        "tid": tid,
        "regs": regs.resumed(image=True).pack().hex(),
        "xstate": tracer.get_xstate(tid).hex(),
        "sigmask": mask,
        "pending": [s.hex() for s in tracer.peek_siginfo(tid, shared=False)],
        "altstack": [ss_sp, ss_flags & ~1, ss_size],  # SS_ONSTACK is state, not a setting
        "tid_address": tid_address,
        "robust_list": list(tracer.robust_list(tid)),
        "rseq": tracer.rseq_config(tid),
        "comm": comm.hex(),
        "affinity": sorted(os.sched_getaffinity(tid)),
        "nice": os.getpriority(os.PRIO_PROCESS, tid),
    }


def _read_sigactions(inj: Injector, tid: int) -> list[list[int]]:
    acts = []
    for sig in range(1, 65):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            acts.append([0, 0, 0, 0])
            continue
        inj.call(tid, "rt_sigaction", sig, 0, inj.scratch, 8)
        acts.append(list(struct.unpack("4Q", inj.get(32))))
    return acts


def _read_posix_timers(inj: Injector, pid: int) -> list[dict[str, Any]]:
    timers = []
    for t in procfs.posix_timers(pid):
        tid_ = int(t["ID"])
        signo, _, value = t["signal"].partition("/")
        notify, _, target = t["notify"].partition("/")
        target = target.partition(".")[2]
        inj.call(pid, "timer_gettime", tid_, inj.scratch)
        interval_s, interval_ns, value_s, value_ns = struct.unpack("4q", inj.get(32))
        timers.append({"id": tid_, "signo": int(signo), "value": int(value, 16),
                       "notify": notify, "target": int(target or 0), "clockid": int(t["ClockID"]),
                       "interval": [interval_s, interval_ns], "remaining": [value_s, value_ns]})
    return timers


def _write(pid: int, image: dict[str, Any], snapshot: SnapshotWriter, omit: set[int]) -> None:
    """Pages, shared memory and descriptor data, then the image description."""
    pidfd = os.pidfd_open(pid)

    def save(name: str, data: bytes) -> str:
        w = snapshot.create(name)
        w.write(data)
        return name

    try:
        image["fds"] = fds.collect(pid, pidfd, save, omit)
        image["omitted_fds"] = sorted(omit)
    except fds.Unrestorable as exc:
        raise DumpError(f"process {pid}: {exc}") from None
    finally:
        os.close(pidfd)
    records: list[dict[str, Any]] = []
    parts: list[tuple[list[tuple[int, int]], bool]] = []
    shmem: dict[int, list[procfs.Vma]] = {}
    pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for v in image.pop("vmas"):
            try:
                kind = memory.classify(v)
            except memory.MappingError as exc:
                raise DumpError(f"process {pid}: {exc}") from None
            rec: dict[str, Any] = {"start": v.start, "end": v.end, "prot": v.prot,
                                   "shared": v.shared, "kind": kind, "path": v.path,
                                   "offset": v.offset, "inode": v.inode,
                                   "flags": sorted(v.flags)}
            if kind == "skip":
                rec["kind"] = "vvar" if v.path.startswith("[vvar") else "skip"
            if kind in ("file", "shared-file"):
                st = os.stat(v.path)
                rec["file_id"] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]
                rec["may_write"] = "mw" in v.flags
            if kind == "shmem":
                shmem.setdefault(v.inode, []).append(v)
            runs = memory.runs_of(pid, pagemap, v, kind)
            rec["runs"] = runs
            parts.append((runs, "rd" in v.flags))
            records.append(rec)
    finally:
        os.close(pagemap)
    image["vmas"] = records
    image["shmem"] = _save_shmem(pid, shmem, image["fds"], snapshot)
    pages = snapshot.create(PAGES)
    crcs = memory.dump_pages(pid, pages.fd, parts)
    pages.size = sum(n for runs, _ in parts for _, n in runs) * memory.PAGE
    snapshot.adopt(pages, f"crc32c/{memory.CHUNK}:{CRCS}")
    snapshot.create(CRCS).write(crcs)
    snapshot.create(IMAGE).write(json.dumps(image, separators=(",", ":")).encode())


def _save_shmem(pid: int, objects: dict[int, list[procfs.Vma]], fd_records: list[dict[str, Any]],
                snapshot: SnapshotWriter) -> dict[str, Any]:
    """Content of each shared memory object that is mapped: from its descriptor's copy when the
    process holds one (that covers it whole), else from the mappings."""
    saved: dict[str, Any] = {}
    by_ino = {r["ino"]: r for r in fd_records if r.get("kind") in ("memfd", "deleted")}
    for ino, maps in objects.items():
        if ino in by_ino:  # the descriptor's saved content is the object, whole
            saved[str(ino)] = {"from_fd": by_ino[ino]["fd"]}
            continue
        size = max(v.offset + v.length for v in maps)
        w = snapshot.create(f"shm-{ino}.data")
        data = bytearray(size)
        for v in maps:
            data[v.offset:v.offset + v.length] = _read_any(pid, v)
        w.write(data)
        name = maps[0].path.removeprefix("/memfd:").removesuffix(" (deleted)")
        saved[str(ino)] = {"data": f"shm-{ino}.data", "size": size, "name": name}
    return saved


def _read_any(pid: int, v: procfs.Vma) -> bytes:
    if "rd" in v.flags:
        return tracer.read_mem(pid, v.start, v.length)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
        f.seek(v.start)
        return f.read(v.length)
