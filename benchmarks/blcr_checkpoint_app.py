"""The application side of benchmarks/blcr_checkpoint.py: a plain Python process (not under
pycrs: ``blcr`` saves it from outside) that holds N MiB of numpy memory.

``hold --size-mib N``
    Allocates an N MiB array and writes every 4 KiB page of it (each page holds its own index,
    so a page restored at the wrong place or not at all is seen), prints ``READY <pid>``, then
    loops: adds 1 to the last 64 KiB of the array and sleeps ``--sleep`` seconds. On SIGTERM it
    checks the whole array (every page its index, the last 64 KiB its index plus the number of
    iterations), prints ``BYE <pid> ok=<0|1> iterations=<n> ... t=<time>`` and exits 0 (1 if
    the check failed).
    Its output goes wherever the driver put it (a log file, which a restore reopens).
    With ``--data mix`` (benchmarks/mtcp_checkpoint.py, which compresses) the array is a
    realistic mix instead: half random float64 (a simulation's state: incompressible), half a
    quantized field (float64 on a coarse grid, constant over stretches of a few thousand
    elements, as masks, labels and coarse levels are: it compresses well); it is checked against
    checksums taken when it was filled.

``refs --size-mib N``
    Memory-only reference points, printed as ``BENCH <json>``: CRC-32C of N MiB in 1 MiB pieces
    (the component's own C function, as it checksums the image), a copy of N MiB through an
    8 MiB buffer (as the dump and the restore move pages), and the first touch of N MiB of fresh
    anonymous memory in 4 KiB pages and with MADV_HUGEPAGE (the memory a restore writes into is
    new to the process).
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import sys
import time

import numpy as np

PAGE_WORDS = 4096 // 8
HOT_PAGES = 16  # the part the loop keeps updating: 64 KiB at the end of the array
ROWS = 16384  # pages filled or checked at a time (64 MiB)


def fill_mix(words: np.ndarray) -> list[int]:
    """Half random floats, half a quantized field (see ``--data mix``); the checksums."""
    a = words.view(np.float64)
    half, block = len(a) // 2, ROWS * PAGE_WORDS
    rng = np.random.default_rng(2026)
    for start in range(0, len(a), block):
        end = min(start + block, len(a))
        if start < half:
            a[start:end] = rng.random(end - start)
        else:
            a[start:end] = np.floor(np.sin(np.arange(start, end) / 40000.0) * 16) / 16
    return digest(words)


def digest(words: np.ndarray) -> list[int]:
    """A checksum per 64 MiB: the wrapping sum of its 64-bit words."""
    block = ROWS * PAGE_WORDS
    return [int(words[s:s + block].sum(dtype=np.uint64)) for s in range(0, len(words), block)]


def hold(size_mib: int, sleep: float, data: str = "index") -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda sig, frame: stop.append(sig))
    pages = (size_mib << 20) // 4096
    t0 = time.perf_counter()
    words = np.empty(pages * PAGE_WORDS, dtype=np.uint64)
    grid = words.reshape(pages, PAGE_WORDS)
    sums = fill_mix(words[:-HOT_PAGES * PAGE_WORDS]) if data == "mix" else None
    for r in range(0, pages if sums is None else 0, ROWS):
        grid[r:r + ROWS] = np.arange(r, min(r + ROWS, pages), dtype=np.uint64)[:, None]
    grid[-HOT_PAGES:] = np.arange(pages - HOT_PAGES, pages, dtype=np.uint64)[:, None]
    print(f"READY {os.getpid()} fill_s={time.perf_counter() - t0:.3f}", flush=True)
    hot = grid[-HOT_PAGES:]
    iterations = 0
    while not stop:
        hot += 1
        iterations += 1
        if sleep:
            time.sleep(sleep)
    t0 = time.perf_counter()
    ok = sums is None or digest(words[:-HOT_PAGES * PAGE_WORDS]) == sums
    for r in range(0, pages - HOT_PAGES if sums is None else 0, ROWS):
        end = min(r + ROWS, pages - HOT_PAGES)
        ok &= bool((grid[r:end] == np.arange(r, end, dtype=np.uint64)[:, None]).all())
    want = np.arange(pages - HOT_PAGES, pages, dtype=np.uint64)[:, None] + np.uint64(iterations)
    ok &= bool((hot == want).all())
    print(f"BYE {os.getpid()} ok={int(ok)} iterations={iterations} "
          f"check_s={time.perf_counter() - t0:.3f} t={time.time():.3f}", flush=True)
    sys.exit(0 if ok else 1)


def refs(size_mib: int) -> None:
    from crs.plugins.blcr._native import ffi, lib  # the component's CRC-32C (SSE 4.2)

    n = size_mib << 20
    chunk = 1 << 20
    src = np.ones(n, dtype=np.uint8)
    mem = ffi.from_buffer(src)
    t0 = time.perf_counter()
    for start in range(0, n, chunk):
        lib.blcr_crc32c(mem + start, min(chunk, n - start))
    t1 = time.perf_counter()
    buf = np.ones(8 << 20, dtype=np.uint8)
    t2 = time.perf_counter()
    for start in range(0, n, buf.size):
        part = src[start:start + buf.size]
        buf[:part.size] = part
    t3 = time.perf_counter()
    del src, mem
    touch = {}
    for name, advice in (("touch_4k_s", mmap.MADV_NOHUGEPAGE), ("touch_thp_s", mmap.MADV_HUGEPAGE)):
        m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(advice)
        view = np.frombuffer(m, dtype=np.uint8)
        t4 = time.perf_counter()
        view[::4096] = 1  # one write per 4 KiB page: the kernel allocates and zeroes each
        touch[name] = time.perf_counter() - t4
        del view
        m.close()
    print("BENCH " + json.dumps({"event": "refs", "crc32c_s": t1 - t0, "memcpy_s": t3 - t2,
                                 **touch}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["hold", "refs"])
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--sleep", type=float, default=0.001)
    p.add_argument("--data", choices=["index", "mix"], default="index")
    ns = p.parse_args()
    if ns.mode == "hold":
        hold(ns.size_mib, ns.sleep, ns.data)
    else:
        refs(ns.size_mib)


if __name__ == "__main__":
    main()
