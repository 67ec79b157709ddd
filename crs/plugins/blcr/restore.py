"""Restore a process from its image: a stub forked with the image's PID takes the descriptors,
then every mapping, thread and register set is put back by system calls injected into it.

Order: check that the PID, TIDs and mapped files are as the image needs; rebuild descriptors
here; fork the stub (it places descriptors, cwd, umask, limits and signal actions itself and
stops); unmap all of it but a syscall page; map the vDSO and every mapping at its address; load
the pages (checking each MiB); set protections, mm fields, threads, timers and pending signals;
drop the syscall page and let every thread run from its saved registers.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any, NoReturn

from crs.framework import CRSError
from crs.hookspecs import Relaunch
from crs.snapshot import LocalSnapshot, SnapshotError

from . import fds, memory, procfs, tracer
from ._native import ffi, lib
from .dump import CRCS, FORMAT, IMAGE, PAGES
from .memory import MappingError
from .tracer import Injector

SCRATCH = 64 * 1024
TOP = 0x7FFFFFFFF000
MAP_PRIVATE, MAP_SHARED, MAP_FIXED, MAP_ANON, MAP_GROWSDOWN = 0x02, 0x01, 0x10, 0x20, 0x100
# CLONE_VM, FS, FILES, SIGHAND, THREAD, SYSVSEM
THREAD_FLAGS = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000
PR_SET_MM, PR_SET_MM_MAP, PR_SET_NAME, PR_TIMER_CREATE_RESTORE_IDS = 35, 14, 15, 77
ARCH_MAP_VDSO_64 = 0x2003
WALL = 0x40000000
F_ADD_SEALS = 1033
IOV_BATCH = 1024  # IOV_MAX, and 16 KiB of scratch
SIGEV = {"signal": 0, "none": 1, "thread": 4}
CAP_SYS_ADMIN, CAP_CHECKPOINT_RESTORE = 21, 40
LINUX_CAPABILITY_VERSION_3 = 0x20080522
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGQUIT)


class RestoreError(CRSError):
    """The process cannot be rebuilt; the message says why."""


def read_image(snap: LocalSnapshot) -> dict[str, Any]:
    r = snap.open(IMAGE)
    data = r.read(r.size)
    r.finish()
    try:
        image = json.loads(bytes(data))
    except ValueError:
        raise SnapshotError(f"{snap.path / IMAGE}: not a process image") from None
    if image.get("format") != FORMAT:
        raise SnapshotError(f"{snap.path / IMAGE}: unknown image format {image.get('format')!r}")
    return image


def _load(snap: LocalSnapshot, name: str) -> bytes:
    r = snap.open(name)
    data = bytes(r.read(r.size))
    r.finish()
    return data


def check_restorable(image: dict[str, Any], pid_namespace: bool) -> None:
    """The image's PID and TIDs must be free (unless it goes to a fresh PID namespace) and its
    mapped files unchanged."""
    for t in ([] if pid_namespace else image["threads"]):
        tid = t["tid"]
        if os.path.exists(f"/proc/{tid}"):
            try:
                comm = procfs.read_text(f"/proc/{tid}/comm").strip()
            except OSError:
                comm = "?"
            what = "PID" if tid == image["pid"] else "thread ID"
            raise RestoreError(f"{what} {tid} is in use (by {comm}); end that process first, or "
                               "restore into a fresh PID namespace (--pid-namespace)")
    seen = set()
    for v in image["vmas"]:
        if "file_id" not in v or v["path"] in seen:
            continue
        seen.add(v["path"])
        try:
            st = os.stat(v["path"])
        except OSError as exc:
            raise RestoreError(f"mapped file {v['path']} is gone: {exc.strerror}") from None
        if [st.st_size, st.st_mtime_ns] != v["file_id"][2:]:
            raise RestoreError(f"mapped file {v['path']} changed since the checkpoint")


def may_choose_pids() -> bool:
    """Whether this process may choose the PIDs of the processes it starts (CAP_SYS_ADMIN or
    CAP_CHECKPOINT_RESTORE); without, restores go into a user namespace of their own."""
    try:
        status = procfs.read_text("/proc/self/status")
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            eff = int(line.split()[1], 16)
            return bool(eff >> CAP_SYS_ADMIN & 1 or eff >> CAP_CHECKPOINT_RESTORE & 1)
    return False


_userns_refusal: list[str | None] = []


def userns_refusal() -> str | None:
    """Why this kernel does not let us restore into a user namespace of our own (one line), or
    None when it does. Probed once per process, by a child that tries what a restore does."""
    if not _userns_refusal:
        step = ffi.new("const char **")
        err = lib.blcr_probe_userns(os.getuid(), os.getgid(), step)
        _userns_refusal.append(None if err == 0 else
                               f"{ffi.string(step[0]).decode()}: {os.strerror(-err)}")
    return _userns_refusal[0]


def no_restore_without_privilege(pid: int) -> str | None:
    """The one-line reason why this user cannot restore an image of process ``pid`` here, or
    None when they can (with privilege, or in a user namespace of their own)."""
    if may_choose_pids():
        return None
    why = userns_refusal()
    if why is None:
        return None
    return (f"choosing PID {pid} needs privilege (CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN), and "
            f"this kernel forbids the unprivileged user namespace an ordinary user restores in "
            f"({why}); restart as root")


def _code_page(image: dict[str, Any]) -> int:
    """An address free both in the image and in this process, for the stub's syscall page."""
    taken = [(v["start"], v["end"]) for v in image["vmas"]]
    taken += [(v.start, v.end) for v in procfs.vmas(os.getpid())]
    addr = 0x10000000
    while any(lo < addr + SCRATCH and addr < hi for lo, hi in taken):
        addr += 1 << 20
    return addr


class Stub:
    """The process being rebuilt, and the descriptors it is to close before it runs. ``waiter``
    is the child to wait for: the process itself, or the init of its PID namespace."""

    def __init__(self, pid: int, waiter: int, code: int, aux: list[int]) -> None:
        self.pid, self.waiter = pid, waiter
        self.here: dict[int, int] = {}
        self.inj = Injector(pid, code, code + 4096, SCRATCH - 4096)
        self.code = code
        self.aux = aux


def restore(snap: LocalSnapshot, truncate_files: bool = True, stop: bool = False,
            pid_namespace: bool = False, report: fds.Report | None = None) -> tuple[int, int]:
    """Rebuild the process of ``snap`` as a child of this one (or as the child of the init of a
    fresh PID namespace, which is ours); return its PID here and the PID of the child to wait
    for. It runs, or is stopped when ``stop``. ``report`` hears of every file cut back."""
    image = read_image(snap)
    userns = namespaces_needed(image)
    pid_namespace = pid_namespace or userns
    check_restorable(image, pid_namespace)
    rebuilt = fds.rebuild(image["fds"], lambda name: _load(snap, name), truncate_files, report)
    try:
        stub = _spawn(image, snap, rebuilt, pid_namespace, userns)
    finally:
        rebuilt.close()
    try:
        if pid_namespace:
            _end_group_stop(stub)
        _rebuild_memory(stub, image, snap)
        for fd, seals, _ in rebuilt.seals:  # once mapped: a write seal would forbid the mapping
            stub.inj.call(stub.pid, "fcntl", fd, F_ADD_SEALS, seals)
        _rebuild_threads(stub, image)
        if userns:  # the stub held every capability of its namespace; the process had none
            _drop_capabilities(stub)
        _release(stub, image, stop or image.get("stopped", False))
    except BaseException:
        os.kill(stub.pid, 9)
        with suppress(ChildProcessError):
            os.waitpid(stub.pid, WALL)  # as its tracer first, or its parent never hears of it
        if stub.waiter != stub.pid:
            os.waitpid(stub.waiter, 0)
        forget_status(stub.waiter)
        raise
    return stub.pid, stub.waiter


def namespaces_needed(image: dict[str, Any]) -> bool:
    """Whether the restore of ``image`` goes into a user namespace of its own (the caller may
    not choose PIDs here); RestoreError when that is needed and the kernel forbids it."""
    if may_choose_pids():
        return False
    why = no_restore_without_privilege(image["pid"])
    if why:
        raise RestoreError(why)
    return True


# the read end of the pipe on which the init of a PID namespace writes the raw wait status of
# the process it waited for, by the init's PID
_status_pipes: dict[int, int] = {}


def forget_status(waiter: int) -> None:
    fd = _status_pipes.pop(waiter, -1)
    if fd >= 0:
        os.close(fd)


def exit_status(waiter: int, status: int) -> int:
    """The wait status of the restored process, given ``status``, the one of ``waiter``: the
    init of its PID namespace says the process's own (it cannot die of its signal itself)."""
    fd = _status_pipes.pop(waiter, -1)
    if fd < 0:
        return status
    try:
        said = os.read(fd, 4)
    finally:
        os.close(fd)
    return struct.unpack("i", said)[0] if len(said) == 4 else status


def _drop_capabilities(stub: Stub) -> None:
    """Every thread of the stub leaves its user namespace's capabilities behind."""
    head = stub.inj.put(struct.pack("Ii", LINUX_CAPABILITY_VERSION_3, 0), 2048)
    data = stub.inj.put(bytes(24), 2064)
    for tid in stub.here.values():
        stub.inj.call(tid, "capset", head, data)


def restart_as_child(component: str, snapshot: LocalSnapshot, relaunch: Relaunch, spawn: bool,
                     truncate_files: bool, rebuild: Callable[..., tuple[int, int]] | None = None
                     ) -> NoReturn:
    """What opal-restart does with an image (of the blcr or the mtcp component): rebuild the
    process as our child (with ``rebuild``, by default this module's ptrace ``restore``), pass
    our signals on to it, wait for it and end as it ends (exit status, or death by the same
    signal). With ``relaunch.detach``, print its PID and return at once."""
    if spawn:
        raise NotImplementedError(f"{component} restores a process as a child of the restarting "
                                  "tool only (opal-restart)")
    pid = 0
    early: list[int] = []

    def forward(sig: int, frame: object) -> None:
        if pid:
            os.kill(pid, sig)
        else:
            early.append(sig)

    for sig in FORWARDED:  # from here on, a signal for the tool is one for the process
        signal.signal(sig, forward)
    def report(line: str) -> None:
        print(f"opal-restart: {line}", file=sys.stderr, flush=True)

    pid, waiter = (rebuild or restore)(snapshot, truncate_files=truncate_files,
                                        stop=relaunch.stop, pid_namespace=relaunch.pid_namespace,
                                        report=report if relaunch.verbose else None)
    for sig in early:
        os.kill(pid, sig)
    if relaunch.restored is not None:
        relaunch.restored(pid)
    elif relaunch.verbose:
        print(f"opal-restart: restored process {pid}", file=sys.stderr, flush=True)
    if relaunch.detach:
        print(pid, flush=True)
        os._exit(0)
    _, status = os.waitpid(waiter, 0)
    code = os.waitstatus_to_exitcode(exit_status(waiter, status))
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:  # die the same way (SIGKILL and SIGSTOP have no handler to reset)
        with suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


class StubPlan:
    """What the stub takes before it becomes the process: the image's descriptors and, above
    them, auxiliary ones for its rebuilder (mapped files, shared memory, the pages), ``aux_of``
    naming each by what it is; ``aux_fds`` lists their numbers there. With ``keep_on_exec`` every
    descriptor survives an exec (the mtcp restart program takes them, and sets close-on-exec
    again on those in ``cloexec_after``)."""

    def __init__(self, rebuilt: fds.Rebuilt, keep_on_exec: bool = False) -> None:
        self.rebuilt = rebuilt
        self.moves = list(rebuilt.moves)
        # an exec would close the process's close-on-exec descriptors: its program marks them
        self.cloexec_after = [m[1] for m in self.moves if m[2]] if keep_on_exec else []
        if keep_on_exec:
            self.moves = [(ours, theirs, False) for ours, theirs, _ in self.moves]
        self.next_fd = max([m[1] for m in self.moves] + [2]) + 1
        self.aux_of: dict[str, int] = {}
        self.aux_fds: list[int] = []
        self.cloexec = not keep_on_exec

    def aux(self, ours: int) -> int:
        """Give the stub our descriptor ``ours`` (owned by ``rebuilt``, closed with it); its
        number there."""
        theirs = self.next_fd
        self.moves.append((ours, theirs, self.cloexec))
        self.aux_fds.append(theirs)
        self.next_fd += 1
        return theirs


def plan_descriptors(image: dict[str, Any], snap: LocalSnapshot, rebuilt: fds.Rebuilt,
                     keep_on_exec: bool = False) -> StubPlan:
    """The descriptors a rebuilder of ``image`` needs in the stub, opened here."""
    sp = StubPlan(rebuilt, keep_on_exec)
    aux_of = sp.aux_of
    for v in image["vmas"]:
        if v["kind"] in ("file", "shared-file") and v["path"] not in aux_of:
            mode = os.O_RDWR if v["kind"] == "shared-file" and v.get("may_write") else os.O_RDONLY
            try:
                aux_of[v["path"]] = sp.aux(rebuilt.own(os.open(v["path"], mode | os.O_CLOEXEC)))
            except OSError as exc:
                raise RestoreError(f"mapped file {v['path']}: {exc.strerror}") from None
    for ino, obj in image["shmem"].items():
        if "from_fd" in obj:  # the same object as a descriptor of the process
            aux_of[f"shmem:{ino}"] = sp.aux(rebuilt.by_ino[int(ino)])
            continue
        memfd = fds.memfd_for(rebuilt, int(ino), obj["name"], obj["size"], _load(snap, obj["data"]))
        aux_of[f"shmem:{ino}"] = sp.aux(memfd)
    # the pages as the image stores them (the restart program reads lzp1 frames), or as a stream
    # of pages to read with preadv, decompressed here when the image is compressed
    pages = os.open(snap.path / PAGES, os.O_RDONLY | os.O_CLOEXEC) if keep_on_exec \
        else _page_stream(image, snap)
    aux_of["pages"] = sp.aux(rebuilt.own(pages))
    # /proc/PID/exe: the executable, unless it is gone (deleted since; its mappings were saved
    # whole) or is the one the stub runs already (the kernel refuses to swap an executable that
    # is still mapped, as it then is)
    exe = image["exe"]
    if os.path.isfile(exe) and (keep_on_exec or not os.path.samefile(exe, "/proc/self/exe")):
        aux_of["exe"] = sp.aux(rebuilt.own(os.open(exe, os.O_RDONLY | os.O_CLOEXEC)))
    return sp


def stub_struct(image: dict[str, Any], sp: StubPlan, err_fd: int, code: int,
                pid_namespace: bool, keep: list[Any], userns: bool = False) -> Any:
    """The C plan of the stub (cffi buffers it points to are kept alive in ``keep``); with
    ``userns``, in a user namespace of its own."""

    def arr(kind: str, values: list[int]) -> Any:
        a = ffi.new(f"{kind}[]", max(len(values), 1))
        for i, x in enumerate(values):
            a[i] = x
        keep.append(a)
        return a

    rebuilt, moves = sp.rebuilt, sp.moves
    cwd = rebuilt.own(os.open(image["cwd"], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
    plan = ffi.new("struct blcr_stub_plan *")
    keep.append(plan)
    plan.want_pid = image["pid"]
    plan.nmoves = len(moves)
    plan.moves = arr("int", [x for m in moves for x in (m[0], m[1], int(m[2]))])
    plan.nepoll = len(rebuilt.epoll)
    plan.epoll = arr("int64_t", [x - (1 << 64) if x >= 1 << 63 else x  # data is 64 bits wide
                                 for e in rebuilt.epoll for x in e])
    plan.cwd_fd = cwd
    plan.umask = image["umask"]
    limits = [[r, s if s >= 0 else (1 << 64) - 1, h if h >= 0 else (1 << 64) - 1]
              for r, s, h in image["rlimits"]]
    plan.nlimits = len(limits)
    plan.limits = arr("int64_t", [x - (1 << 64) if x >= 1 << 63 else x
                                  for lim in limits for x in lim])
    plan.sigactions = arr("uint64_t", [x for a in image["sigactions"] for x in a])
    plan.code_addr = code
    plan.code_len = SCRATCH
    plan.err_fd = err_fd
    plan.new_pidns = int(pid_namespace)
    plan.new_userns = int(userns)
    plan.uid, plan.gid = os.getuid(), os.getgid()
    plan.init_keep_fd = launcher_fd()
    plan.status_fd = -1
    # a session or group it led comes back, since its PID does (a foreign one cannot)
    pid = image["pid"]
    plan.session = 1 if image.get("sid") == pid else 2 if image.get("pgid") == pid else 0
    return plan


def launcher_fd() -> int:
    """The PMI descriptor of the MPI launcher that started us (-1: none): a restored rank takes
    it from its parent, the init of its PID namespace when it has one."""
    try:
        fd = int(os.environ.get("PMI_FD", ""))
        os.fstat(fd)
    except (ValueError, OSError):
        return -1
    return fd


def spawn_stub(image: dict[str, Any], plan: Any, err_r: int, err_w: int) -> tuple[int, int]:
    """Start the stub; (its PID, the init of its PID namespace or 0). Raise RestoreError with
    what the stub reported on the error pipe when it failed before it stopped (or exec'd)."""
    init = ffi.new("int *")
    status_r = -1
    if plan.new_pidns:  # the init says how the process ended on this pipe
        status_r, plan.status_fd = os.pipe2(os.O_CLOEXEC)
    try:
        pid = lib.blcr_spawn_stub(plan, init)
    finally:
        if status_r >= 0:
            os.close(plan.status_fd)
    if init[0]:
        _status_pipes[init[0]] = status_r
    elif status_r >= 0:
        os.close(status_r)
    os.close(err_w)
    failure = ""
    if plan.exec_path == ffi.NULL:
        with os.fdopen(err_r, "rb") as f:
            failure = f.read().decode(errors="replace")
    if failure:
        step, _, err = failure.rpartition(":")
        raise RestoreError(f"restoring descriptors and process state failed at {step}: "
                           f"{os.strerror(int(err)) if err.isdigit() else err}")
    if pid < 0:
        if init[0]:
            os.kill(init[0], 9)
            os.waitpid(init[0], 0)
            forget_status(init[0])
        if pid == -17:  # EEXIST
            raise RestoreError(f"PID {image['pid']} is in use; end that process first")
        if pid == -1:
            raise RestoreError(f"choosing PID {image['pid']} needs privilege "
                               "(CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN)")
        raise RestoreError(f"cannot start the process to restore into: {os.strerror(-pid)}")
    return pid, init[0]


def _spawn(image: dict[str, Any], snap: LocalSnapshot, rebuilt: fds.Rebuilt,
           pid_namespace: bool, userns: bool) -> Stub:
    sp = plan_descriptors(image, snap, rebuilt)
    code = _code_page(image)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    keep: list[Any] = []
    plan = stub_struct(image, sp, err_w, code, pid_namespace, keep, userns)
    pid, init = spawn_stub(image, plan, err_r, err_w)
    stub = Stub(pid, init or pid, code, sp.aux_fds)
    stub.aux_of = sp.aux_of  # type: ignore[attr-defined]
    return stub


def _end_group_stop(stub: Stub) -> None:
    """A stub in a PID namespace stopped itself with SIGSTOP (it has no tracer to stop for):
    end that stop now, or the process would fall back into it when released, and take the
    SIGCONT off its queue (it is blocked there) so the restored process never sees it."""
    os.kill(stub.pid, signal.SIGCONT)
    inj = stub.inj
    mask = inj.put(struct.pack("Q", 1 << (signal.SIGCONT - 1)), 1024)
    zero = inj.put(struct.pack("qq", 0, 0), 1040)
    inj.call(stub.pid, "rt_sigtimedwait", mask, 0, zero, 8)


def _rebuild_memory(stub: Stub, image: dict[str, Any], snap: LocalSnapshot) -> None:
    inj, pid = stub.inj, stub.pid
    # the stub inherited this process's rseq area, which is about to be unmapped
    rs = tracer.rseq_config(pid)
    if rs:
        inj.call(pid, "rseq", rs[0], rs[1], 1, rs[2])
    inj.call(pid, "munmap", 0, stub.code)
    inj.call(pid, "munmap", stub.code + SCRATCH, TOP - stub.code - SCRATCH)
    vdso = next((v for v in image["vmas"] if v["kind"] == "vdso"), None)
    if vdso is not None:
        vvar = [v["start"] for v in image["vmas"] if v["kind"] == "vvar"]
        base = min(vvar) if vvar else vdso["start"]
        inj.call(pid, "arch_prctl", ARCH_MAP_VDSO_64, base)
        got = next((v for v in procfs.vmas(pid) if v.path == "[vdso]"), None)
        if got is None or (got.start, got.end) != (vdso["start"], vdso["end"]):
            raise RestoreError("the vDSO of this kernel does not fit the image's (was it taken "
                               "under another kernel?)")
    aux_of = stub.aux_of  # type: ignore[attr-defined]
    runs: list[tuple[int, int]] = []
    for v in image["vmas"]:
        kind = v["kind"]
        if kind in ("vdso", "vvar", "skip"):
            continue
        prot = v["prot"] | (3 if v["runs"] else 0)
        flags, fd, off = MAP_FIXED, -1, 0
        if kind in ("anon", "anon-copy"):
            flags |= MAP_PRIVATE | MAP_ANON | (MAP_GROWSDOWN if "gd" in v["flags"] else 0)
        elif kind == "file":
            flags |= MAP_PRIVATE
            fd, off = aux_of[v["path"]], v["offset"]
        elif kind == "shared-file":
            flags |= MAP_SHARED
            fd, off = aux_of[v["path"]], v["offset"]
        elif kind == "shmem":
            flags |= MAP_SHARED
            fd, off = aux_of[f"shmem:{v['inode']}"], v["offset"]
        length = v["end"] - v["start"]
        if "gd" in v["flags"]:
            length = v["end"] - v["start"]
        got = inj.call(pid, "mmap", v["start"], length, prot, flags, fd, off)
        if got != v["start"]:
            raise RestoreError(f"mapping {v['start']:#x} landed at {got:#x}")
        for flag in v["flags"]:  # before the pages: with huge pages they load much faster
            if flag in memory.MADVISE:
                inj.raw(pid, "madvise", v["start"], v["end"] - v["start"], memory.MADVISE[flag])
        if "lo" in v["flags"]:  # locked: mlock faults it in, which the load does anyway
            inj.raw(pid, "mlock", v["start"], v["end"] - v["start"])
        runs.extend((a, n) for a, n in v["runs"])
    _load_pages(stub, runs, snap, image)
    for v in image["vmas"]:
        if v["kind"] in ("vdso", "vvar", "skip"):
            continue
        if v["runs"] and v["prot"] != v["prot"] | 3:
            inj.call(pid, "mprotect", v["start"], v["end"] - v["start"], v["prot"])
    mm = image["mm"]
    auxv = bytes.fromhex(image["auxv"])
    auxv_at = inj.put(auxv, 512)
    fields = [mm["start_code"], mm["end_code"], mm["start_data"], mm["end_data"],
              mm["start_brk"], image["brk"], mm["start_stack"], mm["arg_start"], mm["arg_end"],
              mm["env_start"], mm["env_end"], auxv_at]
    exe_fd = aux_of.get("exe", 0xFFFFFFFF)  # -1: leave it
    mm_map = struct.pack("12QII", *fields, len(auxv), exe_fd)
    inj.call(pid, "prctl", PR_SET_MM, PR_SET_MM_MAP, inj.put(mm_map), len(mm_map), 0)
    inj.raw(pid, "personality", image["personality"])


def compressed(image: dict[str, Any]) -> bool:
    codec = image.get("pages_codec", "none")
    if codec not in ("none", "lzp1"):
        raise SnapshotError(f"pages.img: unknown compression {codec!r}")
    return codec == "lzp1"


def _page_stream(image: dict[str, Any], snap: LocalSnapshot) -> int:
    """A descriptor the stub reads its pages from: pages.img itself, or for a compressed image
    a memfd with the page stream, decompressed once the CRCs of pages.img are checked."""
    if not compressed(image):
        return os.open(snap.path / PAGES, os.O_RDONLY | os.O_CLOEXEC)
    where = str(snap.path / PAGES)
    pages = snap.open(PAGES)
    try:
        memory.verify_pages(pages.fd, pages.size, _load(snap, CRCS), where)
        raw = int(image.get("pages_raw_bytes", -1))
        if raw < 0:
            raise SnapshotError(f"{snap.path / IMAGE}: compressed image without pages_raw_bytes")
        out = os.memfd_create("pycrs-pages", os.MFD_CLOEXEC)
        try:
            os.lseek(pages.fd, 0, os.SEEK_SET)
            memory.unpack_pages(pages.fd, out, raw, where)
        except BaseException:
            os.close(out)
            raise
    finally:
        pages.finish()
    return out


def _load_pages(stub: Stub, runs: list[tuple[int, int]], snap: LocalSnapshot,
                image: dict[str, Any]) -> None:
    """The stub reads its pages from the image itself, straight into place (one copy, by the
    kernel), while a thread here checks the image's CRCs through a mapping of it (a compressed
    image was checked before it was decompressed)."""
    crcs = _load(snap, CRCS)
    pages = snap.open(PAGES)
    where = str(snap.path / PAGES)
    failure: list[BaseException] = []

    def verify() -> None:
        try:
            if not compressed(image):
                memory.verify_pages(pages.fd, pages.size, crcs, where)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failure.append(exc)

    checker = threading.Thread(target=verify, name="pycrs-blcr-verify")
    checker.start()
    try:
        inj, pid, fd = stub.inj, stub.pid, stub.aux_of["pages"]
        for offset, pieces in memory.read_batches(runs, IOV_BATCH):
            iov = b"".join(struct.pack("QQ", a, n) for a, n in pieces)
            want = sum(n for _, n in pieces)
            got = inj.call(pid, "preadv", fd, inj.put(iov, 4096), len(pieces), offset, 0)
            if got != want:
                raise MappingError(f"{where}: snapshot file is truncated (short read)")
    finally:
        checker.join()
        pages.finish()
    if failure:
        raise failure[0]


def _rebuild_threads(stub: Stub, image: dict[str, Any]) -> None:
    """Threads with their TIDs, per-thread kernel state, timers and pending signals. IDs in
    the image are the process's own (in its PID namespace); ``stub.here`` maps each to the ID
    this process traces it by."""
    inj, pid, own = stub.inj, stub.pid, image["pid"]
    stub.here = {own: pid}
    for t in image["threads"]:
        if t["tid"] == own:
            continue
        before = set(procfs.threads(pid))
        inj.put(struct.pack("i", t["tid"]), 256)
        args = struct.pack("11Q", THREAD_FLAGS, 0, 0, 0, 0, 0, 0, 0, inj.scratch + 256, 1, 0)
        got = inj.raw(pid, "clone3", inj.put(args), len(args))
        if got != t["tid"]:
            why = os.strerror(-got) if got < 0 else f"got {got}"
            raise RestoreError(f"cannot recreate thread {t['tid']}: {why}")
        (new,) = set(procfs.threads(pid)) - before
        tracer.check(lib.blcr_wait_new_thread(new), f"waiting for new thread {got}")
        stub.here[t["tid"]] = new
    for t in image["threads"]:
        tid = stub.here[t["tid"]]
        _schedule(tid, t)
        inj.call(tid, "set_tid_address", t["tid_address"])
        head, length = t["robust_list"]
        if head:
            inj.call(tid, "set_robust_list", head, length)
        sp, flags, size = t["altstack"]
        if not flags & 2:  # SS_DISABLE
            inj.call(tid, "sigaltstack", inj.put(struct.pack("QiiQ", sp, flags, 0, size)), 0)
        if t["rseq"]:
            ptr, size, sig = t["rseq"]
            inj.call(tid, "rseq", ptr, size, 0, sig)
        inj.call(tid, "prctl", PR_SET_NAME, inj.put(bytes.fromhex(t["comm"]) + b"\0"))
    for which, timer in enumerate(itimers_to_arm(image["itimers"])):
        if timer[2] or timer[3]:
            inj.call(pid, "setitimer", which, inj.put(struct.pack("4q", *timer)), 0)
    _rebuild_posix_timers(inj, pid, image["posix_timers"])
    for t in image["threads"]:
        for raw in t["pending"]:
            info = bytes.fromhex(raw)
            sig = struct.unpack_from("i", info)[0]
            inj.call(stub.here[t["tid"]], "rt_tgsigqueueinfo", own, t["tid"], sig, inj.put(info))
    for raw in image["shared_pending"]:
        info = bytes.fromhex(raw)
        inj.call(pid, "rt_sigqueueinfo", own, struct.unpack_from("i", info)[0], inj.put(info))
    for fd in stub.aux:
        inj.call(pid, "close", fd)


def itimers_to_arm(itimers: list[list[int]]) -> list[list[int]]:
    """The interval timers as setitimer is to arm them (interval s, us, value s, us). A periodic
    ITIMER_REAL that has fired while the process was held reads as disarmed with its interval
    kept: the kernel arms it again only when the SIGALRM is taken, which the restored process
    cannot make it do (setitimer cannot set an interval without a value); it is armed for one
    interval instead."""
    out = [list(t) for t in itimers]
    if out and not (out[0][2] or out[0][3]) and (out[0][0] or out[0][1]):
        out[0][2:] = out[0][:2]
    return out


def _schedule(tid: int, t: dict[str, Any]) -> None:
    """CPU affinity (on the CPUs this machine has) and nice value of a thread; a nicer value
    than allowed here is left as it is rather than failing the restore."""
    cpus = set(t.get("affinity", ())) & os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(tid, cpus)
    if "nice" in t:
        with suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, tid, t["nice"])


def _rebuild_posix_timers(inj: Injector, pid: int, timers: list[dict[str, Any]]) -> None:
    if not timers:
        return
    by_id = inj.raw(pid, "prctl", PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0) == 0
    for t in sorted(timers, key=lambda t: t["id"]):
        notify = SIGEV[t["notify"]]
        sev = struct.pack("QiiI", t["value"], t["signo"], notify,
                          t["target"] if notify == 4 else 0).ljust(64, b"\0")
        ev = inj.put(sev)
        idp = inj.put(struct.pack("i", t["id"]), 128)
        inj.call(pid, "timer_create", t["clockid"], ev, idp)
        got = struct.unpack("i", inj.get(4, 128))[0]
        if got != t["id"]:
            raise RestoreError(f"POSIX timer {t['id']} came back as timer {got}"
                               + ("" if by_id else " (this kernel cannot choose timer IDs)"))
        if any(t["remaining"]):
            spec = struct.pack("4q", *t["interval"], *t["remaining"])
            inj.call(pid, "timer_settime", got, 0, inj.put(spec), 0)
    if by_id:
        inj.raw(pid, "prctl", PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0)


def _release(stub: Stub, image: dict[str, Any], stop: bool) -> None:
    own = image["pid"]
    stub.inj.call(stub.pid, "munmap", stub.code, SCRATCH)
    for t in sorted(image["threads"], key=lambda t: t["tid"] == own):  # the main thread last
        regs = bytes.fromhex(t["regs"])
        xstate = bytes.fromhex(t["xstate"])
        tracer.check(lib.blcr_release(stub.here[t["tid"]], regs, xstate, len(xstate),
                                      t["sigmask"], int(stop and t["tid"] == own)),
                     f"starting thread {t['tid']}")
