"""The native piece of the split channel: futex waits and wake-ups on 32-bit sequence words in a
shared memfd mapping (cffi API mode, compiled once into ``_build/`` beside this file, under a lock
so that the helpers of several ranks can ask for it at once).

ch_wait(base, seq_off, flag_off, old, spin, timeout_us): spin up to ``spin`` pause iterations
until the word at base+seq_off differs from ``old``; then announce a sleeper in the word at
base+flag_off and FUTEX_WAIT (timeout_us < 0: none; the app side always waits without timeout so
that a wait interrupted by a checkpoint is simply made again after restart). Returns the value seen.
ch_post(base, seq_off, flag_off, val): store ``val`` (release) and FUTEX_WAKE only if a sleeper
announced itself.
"""
from __future__ import annotations

import fcntl
import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "_build"

CDEF = """
uint32_t ch_wait(char *base, int seq_off, int flag_off, uint32_t old, long spin, long timeout_us);
void ch_post(char *base, int seq_off, int flag_off, uint32_t val);
uint32_t ch_load(char *base, int off);
"""

SRC = r"""
#include <stdint.h>
#include <limits.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/futex.h>

uint32_t ch_load(char *base, int off) {
    return __atomic_load_n((uint32_t *)(base + off), __ATOMIC_ACQUIRE);
}

uint32_t ch_wait(char *base, int seq_off, int flag_off, uint32_t old, long spin, long timeout_us) {
    uint32_t *seq = (uint32_t *)(base + seq_off), *flag = (uint32_t *)(base + flag_off), v;
    for (long i = 0; i < spin; i++) {
        v = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (v != old) return v;
        __builtin_ia32_pause();
    }
    struct timespec ts, *tp = NULL;
    if (timeout_us >= 0) {
        ts.tv_sec = timeout_us / 1000000; ts.tv_nsec = (timeout_us % 1000000) * 1000; tp = &ts;
    }
    __atomic_store_n(flag, 1, __ATOMIC_SEQ_CST);
    for (;;) {
        v = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
        if (v != old) break;
        long r = syscall(SYS_futex, seq, FUTEX_WAIT, old, tp, NULL, 0);
        if (r == -1 && errno == ETIMEDOUT) { v = __atomic_load_n(seq, __ATOMIC_SEQ_CST); break; }
    }
    __atomic_store_n(flag, 0, __ATOMIC_SEQ_CST);
    return v;
}

void ch_post(char *base, int seq_off, int flag_off, uint32_t val) {
    uint32_t *seq = (uint32_t *)(base + seq_off), *flag = (uint32_t *)(base + flag_off);
    __atomic_store_n(seq, val, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(flag, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
"""

MODNAME = "_split_chan"


def load():
    """(ffi, lib), building the extension first if needed."""
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
    out = BUILD / tag
    out.mkdir(parents=True, exist_ok=True)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    try:
        mod = importlib.import_module(MODNAME)
        return mod.ffi, mod.lib
    except ImportError:
        pass
    with open(out / ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        importlib.invalidate_caches()
        try:
            mod = importlib.import_module(MODNAME)
        except ImportError:
            import cffi
            ffi = cffi.FFI()
            ffi.cdef(CDEF)
            ffi.set_source(MODNAME, SRC, extra_compile_args=["-O2"])
            ffi.compile(tmpdir=str(out), verbose=False)
            importlib.invalidate_caches()
            mod = importlib.import_module(MODNAME)
    return mod.ffi, mod.lib


if __name__ == "__main__":
    ffi, lib = load()
    print("built", lib)
