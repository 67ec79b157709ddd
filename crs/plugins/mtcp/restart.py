"""Restore an mtcp image with the restart program (``pycrs-mtcp-restart``, native/restart/):
no ptrace, the process rebuilds itself.

Here, with a real library at hand: check the image, rebuild its descriptors, open what its
mappings need, and lay everything the program needs out in a plan (a flat array of 64-bit words,
the layout of ``struct plan`` in native/restart/restart.h) in a memfd. Then the blcr stub starts
with the image's PID, places the descriptors and execs the program, which maps the image, loads
its pages and lets its threads go. It reports on an error pipe: ``what:errno`` when it fails, or
``OK`` from the restored kernel once the process runs.
"""
from __future__ import annotations

import fcntl
import os
import struct
from contextlib import suppress
from typing import Any

from crs.plugins.blcr import fds, memory, procfs
from crs.plugins.blcr._native import ffi
from crs.plugins.blcr.restore import (
    RestoreError,
    _load,
    check_restorable,
    forget_status,
    itimers_to_arm,
    namespaces_needed,
    plan_descriptors,
    read_image,
    spawn_stub,
    stub_struct,
)
from crs.snapshot import LocalSnapshot

from . import restart_program_path

PLAN_MAGIC = struct.unpack("<Q", b"pycrsRP1")[0]
AREA, AREA_LEN = 0x1000_0000_0000, 16 << 30  # the program is linked at AREA (setup.py)
SCRATCH = AREA + (256 << 20)  # the plan, then thread stacks
CHUNK = 1 << 20
F_ADD_SEALS, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE = 1033, 0x8, 0x10
CODECS = {"none": 0, "lzp1": 1}
MAP_PRIVATE, MAP_SHARED, MAP_ANON, MAP_GROWSDOWN = 0x02, 0x01, 0x20, 0x100
VMA_WORDS, TIMER_WORDS, THREAD_WORDS = 13, 10, 43  # struct plan_vma, plan_timer, plan_thread
# struct plan in restart/restart.h
HEAD = ("magic size pid err_fd pages_fd codec pages_size chunk ncrcs crcs vdso_base resume "
        "stop personality area area_len scratch scratch_len exe_fd "
        + " ".join(f"mm{i}" for i in range(11))
        + " auxv auxv_len nvmas vmas nruns runs sigactions itimers ntimers timers nthreads "
        "threads nclose close ncloexec cloexec drop_caps").split()
MM = ("start_code", "end_code", "start_data", "end_data", "start_brk", None, "start_stack",
      "arg_start", "arg_end", "env_start", "env_end")
# struct user_regs_struct, as the kernel writes it in image.json's "regs"
REGS = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
        "fs_base gs_base ds es fs gs").split()


class Plan:
    """Words of the plan: a header, then blobs appended at aligned offsets."""

    def __init__(self) -> None:
        self.head: dict[str, int] = dict.fromkeys(HEAD, 0)
        self.body = bytearray()

    def add(self, data: bytes, align: int = 8) -> int:
        """Append ``data``; its offset from the start of the plan."""
        start = len(HEAD) * 8 + len(self.body)
        pad = -start % align
        self.body += b"\0" * pad + data
        return start + pad

    def words(self, values: list[int]) -> int:
        return self.add(struct.pack(f"<{len(values)}Q", *[v & (1 << 64) - 1 for v in values]))

    def bytes(self) -> bytes:
        self.head["magic"] = PLAN_MAGIC
        self.head["size"] = len(HEAD) * 8 + len(self.body)
        return struct.pack(f"<{len(HEAD)}Q", *[self.head[k] & (1 << 64) - 1 for k in HEAD]) \
            + bytes(self.body)


def _vdso_span(vmas: list[tuple[str, int, int]]) -> tuple[int, int] | None:
    """(base, end) of vvar and vDSO pages together, from (kind, start, end)."""
    vdso = [(a, b) for k, a, b in vmas if k == "vdso"]
    if not vdso:
        return None
    base = min([a for k, a, _ in vmas if k == "vvar"] + [vdso[0][0]])
    return base, vdso[0][1]


def check_image(image: dict[str, Any]) -> tuple[int, int] | None:
    """What the restart program needs of the image and of this machine; the vDSO span."""
    if "mtcp_resume" not in image:
        raise RestoreError("this image was not written by the mtcp kernel (or by an older one "
                           "without a resume record); restore it with "
                           "--mca crs_mtcp_restart ptrace")
    codec = image.get("pages_codec", "none")
    if codec not in CODECS:
        raise RestoreError(f"image.json: unknown pages codec {codec!r}")
    for v in image["vmas"]:
        if v["start"] < AREA + AREA_LEN and AREA < v["end"]:
            raise RestoreError(f"the image uses {v['start']:#x}-{v['end']:#x}, inside the address "
                               f"range the restart program runs in ({AREA:#x}, 16 GiB); restore it "
                               "with --mca crs_mtcp_restart ptrace")
    span = _vdso_span([(v["kind"], v["start"], v["end"]) for v in image["vmas"]])
    ours = _vdso_span([("vdso" if v.path == "[vdso]" else "vvar" if v.path.startswith("[vvar")
                        else "", v.start, v.end) for v in procfs.vmas(os.getpid())])
    if span and (ours is None or ours[1] - ours[0] != span[1] - span[0]):
        raise RestoreError("the vDSO of this kernel does not fit the image's (was it taken under "
                           "another kernel?)")
    return span


def _record(words: int, *fields: int) -> list[int]:
    """One record of the plan, checked against the length of its C struct."""
    if len(fields) != words:
        raise AssertionError(f"plan record of {len(fields)} words, not {words}")
    return list(fields)


def _thread(t: dict[str, Any], plan: Plan) -> list[int]:
    regs = dict(zip(REGS, struct.unpack("<27Q", bytes.fromhex(t["regs"])), strict=True))
    comm = bytes.fromhex(t["comm"])[:15].ljust(16, b"\0")
    cpus = set(t.get("affinity", ())) & os.sched_getaffinity(0)
    mask = [0] * 16
    for c in cpus:
        if c < 1024:
            mask[c // 64] |= 1 << (c % 64)
    rseq = t["rseq"] or [0, 0, 0]
    xstate = bytes.fromhex(t["xstate"])
    sp, flags, size = t["altstack"]
    return _record(THREAD_WORDS, t["tid"], regs["fs_base"], regs["gs_base"], t["tid_address"],
            *t["robust_list"],
            sp, flags, size, *rseq, *struct.unpack("<2Q", comm), 16 if cpus else 0, *mask,
            t.get("nice", 0), int("nice" in t),
            *(regs[r] for r in ("rbx", "rbp", "r12", "r13", "r14", "r15", "rsp", "rip")),
            plan.add(xstate, 64) if xstate else 0, len(xstate))


def build_plan(image: dict[str, Any], snap: LocalSnapshot, aux_of: dict[str, int],
               close: list[int], cloexec: list[int], err_fd: int, stop: bool,
               vdso: tuple[int, int] | None) -> Plan:
    plan = Plan()
    h = plan.head
    vmas, runs = [], []
    for v in image["vmas"]:
        kind = v["kind"]
        if kind in ("vdso", "vvar", "skip"):
            continue
        fd, off = -1, 0
        if kind in ("anon", "anon-copy"):
            flags = MAP_PRIVATE | MAP_ANON | (MAP_GROWSDOWN if "gd" in v["flags"] else 0)
        elif kind == "file":
            flags, fd, off = MAP_PRIVATE, aux_of[v["path"]], v["offset"]
        elif kind == "shared-file":
            flags, fd, off = MAP_SHARED, aux_of[v["path"]], v["offset"]
        elif kind == "shmem":
            flags, fd, off = MAP_SHARED, aux_of[f"shmem:{v['inode']}"], v["offset"]
        else:
            raise RestoreError(f"image.json: unknown mapping kind {kind!r}")
        advice = [memory.MADVISE[f] for f in v["flags"] if f in memory.MADVISE][:4]
        vmas += _record(VMA_WORDS, v["start"], v["end"], v["prot"] | (3 if v["runs"] else 0),
                        v["prot"], flags, fd, off, len(advice), *(advice + [0] * (4 - len(advice))),
                        int("lo" in v["flags"]))
        runs += [x for run in v["runs"] for x in run]
    crcs = _load(snap, "pages.crc")
    h.update(pid=image["pid"], err_fd=err_fd, pages_fd=aux_of["pages"],
             codec=CODECS[image.get("pages_codec", "none")],
             pages_size=os.stat(snap.path / "pages.img").st_size, chunk=CHUNK,
             ncrcs=len(crcs) // 4, crcs=plan.add(crcs), vdso_base=vdso[0] if vdso else 0,
             resume=image["mtcp_resume"], stop=int(stop), personality=image["personality"],
             area=AREA, area_len=AREA_LEN, scratch=SCRATCH, scratch_len=AREA + AREA_LEN - SCRATCH,
             exe_fd=aux_of.get("exe", -1), nvmas=len(vmas) // VMA_WORDS, vmas=plan.words(vmas),
             nruns=len(runs) // 2, runs=plan.words(runs))
    mm = image["mm"]
    for i, name in enumerate(MM):
        h[f"mm{i}"] = image["brk"] if name is None else mm[name]
    auxv = bytes.fromhex(image["auxv"])
    h.update(auxv=plan.add(auxv), auxv_len=len(auxv))
    if len(image["sigactions"]) != 64:
        raise RestoreError("image.json: signal actions are not 64")
    h["sigactions"] = plan.words([x for a in image["sigactions"] for x in a])
    h["itimers"] = plan.words([x for t in itimers_to_arm(image["itimers"]) for x in t])
    timers = []
    for t in sorted(image["posix_timers"], key=lambda t: t["id"]):
        notify = {"signal": 0, "none": 1, "thread": 4}[t["notify"]]
        timers += _record(TIMER_WORDS, t["id"], t["clockid"], t["signo"], notify, t["target"],
                          t["value"], *t["interval"], *t["remaining"])
    h.update(ntimers=len(timers) // TIMER_WORDS, timers=plan.words(timers))
    threads = [w for t in image["threads"] for w in _thread(t, plan)]
    h.update(nthreads=len(image["threads"]), threads=plan.words(threads),
             nclose=len(close), close=plan.words(close), ncloexec=len(cloexec),
             cloexec=plan.words(cloexec))
    return plan


def restore(snap: LocalSnapshot, truncate_files: bool = True, stop: bool = False,
            pid_namespace: bool = False, report: fds.Report | None = None) -> tuple[int, int]:
    """Rebuild the process of ``snap`` as our child with the restart program; (its PID here, the
    child to wait for). It runs (or is stopped, with ``stop``) when this returns."""
    program = restart_program_path()
    if not program.exists():
        raise RestoreError(f"the mtcp restart program {program} is not built")
    image = read_image(snap)
    userns = namespaces_needed(image)
    pid_namespace = pid_namespace or userns
    check_restorable(image, pid_namespace)
    vdso = check_image(image)
    rebuilt = fds.rebuild(image["fds"], lambda name: _load(snap, name), truncate_files, report)
    try:
        for _, seals, ino in rebuilt.seals:  # the kernel refuses write seals, the others are
            if seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):  # no concern of a mapping
                raise RestoreError("the image has a memfd sealed against writes, which mtcp "
                                   "does not restore")
            fcntl.fcntl(rebuilt.by_ino[ino], F_ADD_SEALS, seals)
        sp = plan_descriptors(image, snap, rebuilt, keep_on_exec=True)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        err_theirs = sp.aux(rebuilt.own(os.dup(err_w)))
        plan_fd = rebuilt.own(os.memfd_create("pycrs-mtcp-restart-plan", os.MFD_CLOEXEC))
        plan_theirs = sp.aux(plan_fd)
        keep_open = {err_theirs, plan_theirs, sp.aux_of.get("exe", -1)}
        plan = build_plan(image, snap, sp.aux_of, [fd for fd in sp.aux_fds if fd not in keep_open],
                          sp.cloexec_after, err_theirs, stop, vdso)
        plan.head["drop_caps"] = int(userns)
        os.write(plan_fd, plan.bytes())
        keep: list[Any] = []
        stub = stub_struct(image, sp, err_w, 0, pid_namespace, keep, userns)
        argv = [ffi.new("char[]", os.fsencode(program)), ffi.new("char[]", b"%d" % plan_theirs)]
        c_argv = ffi.new("char *[]", argv + [ffi.NULL])
        keep += [*argv, c_argv]
        stub.exec_path, stub.exec_argv = argv[0], c_argv
        pid, init = spawn_stub(image, stub, err_r, err_w)
    finally:
        rebuilt.close()
    waiter = init or pid
    with os.fdopen(err_r, "rb") as f:
        said = f.read().decode(errors="replace")
    if said == "OK":
        return pid, waiter
    _reap(pid, waiter)
    if not said:
        raise RestoreError("the restart program died before the process ran again")
    what, _, err = said.rpartition(":")
    if not what:
        raise RestoreError(f"the restart program failed: {said}")
    raise RestoreError(f"{what}: {os.strerror(int(err))}" if err.isdigit() else what)


def _reap(pid: int, waiter: int) -> None:
    """End a restore that failed: the process, and the init of its namespace."""
    with suppress(ProcessLookupError):
        os.kill(pid, 9)
    with suppress(ChildProcessError):
        os.waitpid(waiter, 0)
    forget_status(waiter)
