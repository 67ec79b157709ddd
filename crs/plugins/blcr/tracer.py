"""A narrow Python face for the native ptrace code: registers, injected system calls, memory."""
from __future__ import annotations

import os
import struct

from crs.framework import CRSError

from ._native import ffi, lib

# x86-64 system call numbers used by the dumper and the restorer
NR = dict(close=3, fcntl=72, mmap=9, mprotect=10, munmap=11, brk=12, rt_sigaction=13,
          rt_sigtimedwait=128, madvise=28, getitimer=36, setitimer=38, umask=95,
          rt_sigqueueinfo=129, capset=126, sigaltstack=131, personality=135, mlock=149, prctl=157,
          arch_prctl=158, set_tid_address=218, timer_create=222, timer_settime=223,
          timer_gettime=224, set_robust_list=273, rt_tgsigqueueinfo=297, preadv=295, rseq=334,
          clone3=435)

REGS_SIZE = 27 * 8
REG = {name: i for i, name in enumerate(
    "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
    "fs_base gs_base ds es fs gs".split())}
XSTATE_MAX = 64 * 1024
ERESTART = {-512: "ERESTARTSYS", -513: "ERESTARTNOINTR", -514: "ERESTARTNOHAND",
            -516: "ERESTART_RESTARTBLOCK"}
NR_RESTART_SYSCALL = 219


class TraceError(CRSError):
    """A ptrace step failed; the message names the thread and the step."""


def check(ret: int, what: str) -> int:
    if ret < 0:
        raise TraceError(f"{what}: {os.strerror(-ret)}")
    return ret


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class Regs:
    """A thread's general registers (struct user_regs_struct)."""

    def __init__(self, raw: bytes) -> None:
        self.values = list(struct.unpack("27Q", raw))

    def __getitem__(self, name: str) -> int:
        return self.values[REG[name]]

    def __setitem__(self, name: str, value: int) -> None:
        self.values[REG[name]] = value & ((1 << 64) - 1)

    def pack(self) -> bytes:
        return struct.pack("27Q", *self.values)

    def resumed(self, image: bool) -> Regs:
        """The registers to run from: a system call the stop interrupted is made to start again
        (for an image, a call that had a kernel restart block is run again from its start,
        since that block does not survive)."""
        out = Regs(self.pack())
        err = signed(self["rax"])
        if signed(self["orig_rax"]) >= 0 and err in ERESTART:
            out["rip"] = self["rip"] - 2  # the syscall instruction is two bytes
            out["rax"] = (self["orig_rax"] if image or err != -516 else NR_RESTART_SYSCALL)
        out["orig_rax"] = (1 << 64) - 1
        return out


def get_regs(tid: int) -> Regs:
    buf = ffi.new("char[]", REGS_SIZE)
    check(lib.blcr_get_regs(tid, buf), f"reading the registers of thread {tid}")
    return Regs(ffi.buffer(buf)[:])


def get_xstate(tid: int) -> bytes:
    buf = ffi.new("char[]", XSTATE_MAX)
    n = check(lib.blcr_get_xstate(tid, buf, XSTATE_MAX), f"reading the FPU state of thread {tid}")
    return ffi.buffer(buf, n)[:]


def get_sigmask(tid: int) -> int:
    mask = ffi.new("uint64_t *")
    check(lib.blcr_get_sigmask(tid, mask), f"reading the signal mask of thread {tid}")
    return int(mask[0])


def peek_siginfo(tid: int, shared: bool) -> list[bytes]:
    """Queued signals (128-byte siginfo each) of a thread or of the whole process."""
    found: list[bytes] = []
    buf = ffi.new("char[]", 128 * 64)
    n = check(lib.blcr_peek_siginfo(tid, int(shared), buf, 64), f"reading signals of {tid}")
    raw = ffi.buffer(buf, 128 * n)[:]
    for i in range(n):
        found.append(raw[128 * i:128 * (i + 1)])
    return found


def rseq_config(tid: int) -> tuple[int, int, int] | None:
    """(area, size, signature) of the thread's registered rseq area, if any."""
    buf = ffi.new("char[]", 32)
    if lib.blcr_get_rseq(tid, buf, 32) < 0:
        return None
    ptr, size, sig, _flags = struct.unpack_from("=QIII", ffi.buffer(buf)[:])
    return (ptr, size, sig) if ptr else None


def robust_list(tid: int) -> tuple[int, int]:
    head, length = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    check(lib.blcr_get_robust_list(tid, head, length), f"reading the robust list of {tid}")
    return int(head[0]), int(length[0])


def read_mem(pid: int, addr: int, length: int) -> bytes:
    buf = ffi.new("char[]", length)
    n = check(lib.blcr_read_mem(pid, addr, buf, length), f"reading memory of {pid} at {addr:#x}")
    return ffi.buffer(buf, n)[:]


def write_mem(pid: int, addr: int, data: bytes) -> None:
    check(lib.blcr_write_mem(pid, addr, data, len(data)), f"writing memory of {pid} at {addr:#x}")


class Injector:
    """Runs system calls inside a stopped thread, through a `syscall` instruction at ``insn``,
    with a scratch area at ``scratch`` for the calls' arguments and results."""

    def __init__(self, pid: int, insn: int, scratch: int = 0, scratch_len: int = 0) -> None:
        self.pid, self.insn = pid, insn
        self.scratch, self.scratch_len = scratch, scratch_len

    def raw(self, tid: int, name: str, *args: int) -> int:
        """The call's result as the kernel returned it (a negative errno on failure)."""
        out = ffi.new("long *")
        a = [int(x) & ((1 << 64) - 1) for x in args] + [0] * (6 - len(args))
        a = [x - (1 << 64) if x >= 1 << 63 else x for x in a]
        check(lib.blcr_inject(tid, self.insn, NR[name], *a, out),
              f"running {name} in thread {tid}")
        return int(out[0])

    def call(self, tid: int, name: str, *args: int) -> int:
        ret = self.raw(tid, name, *args)
        if -4096 < ret < 0:
            raise TraceError(f"{name} in process {self.pid} (thread {tid}) failed: "
                             f"{os.strerror(-ret)}")
        return ret

    def put(self, data: bytes, offset: int = 0) -> int:
        """Write ``data`` into the scratch area; return its address there."""
        if offset + len(data) > self.scratch_len:
            raise TraceError("scratch area too small")
        write_mem(self.pid, self.scratch + offset, data)
        return self.scratch + offset

    def get(self, length: int, offset: int = 0) -> bytes:
        return read_mem(self.pid, self.scratch + offset, length)
