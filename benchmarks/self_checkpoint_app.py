"""The application side of benchmarks/self_checkpoint.py; it runs under ``pycrs run``.

Modes:

``serve --size-mib N``
    Holds an N MiB float64 array, registers ``@crs.on_checkpoint`` returning it, and loops on
    ``crs.safe_point()``. It reports each checkpoint taken at a safe point (requested by
    ``opal-checkpoint``) and obeys commands read from stdin between safe points:
    ``ckpt PATH`` (``crs.checkpoint(PATH)``, timed), ``refs`` (memory-only reference timings),
    ``quit``. Restarted by ``opal-restart``, the same command line times ``crs.restored()``,
    reports it and exits.

``spcost --calls C --repeat R``
    Times ``crs.safe_point()`` with nothing pending next to an empty function call.

Results go to stdout as lines ``BENCH <json>``.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
import timeit
from pathlib import Path

t_start = time.perf_counter()

import common  # noqa: E402 - this script's directory is on sys.path
import numpy as np  # noqa: E402
import xxhash  # noqa: E402

import crs  # noqa: E402
from crs import runtime  # noqa: E402

_CHUNK = 8 << 20  # the chunk size crs/snapshot.py hashes and writes in


def report(**record: object) -> None:
    sys.stdout.write("BENCH " + json.dumps(record) + "\n")
    sys.stdout.flush()


def evict(paths: list[Path], method: str) -> float:
    """Push ``paths`` out of the page cache the way the driver asked; return the time it took."""
    t0 = time.perf_counter()
    common.evict(paths, method)
    return time.perf_counter() - t0


def restart_mode(size_mib: int) -> None:
    """A process relaunched by opal-restart: time crs.restored() and say what it found."""
    snap = runtime.restart_snapshot()
    method = os.environ.get("PYCRS_BENCH_EVICT", "none")
    evict_s = evict([snap], method) if snap is not None else 0.0
    t0 = time.perf_counter()
    state = crs.restored()
    t1 = time.perf_counter()
    field = state["field"]
    expected = size_mib << 20
    ok = field.nbytes == expected and field[0] == 0.0 and field[-1] == field.size - 1
    report(event="restored", restore_s=t1 - t0, evict_s=evict_s, startup_s=t0 - t_start - evict_s,
           nbytes=field.nbytes, ok=bool(ok))


def serve(size_mib: int) -> None:
    field = np.arange((size_mib << 20) // 8, dtype=np.float64)  # touches every page
    marks: dict[str, float] = {}

    @crs.on_checkpoint
    def save() -> dict:
        marks["callback"] = time.perf_counter()
        return {"field": field}

    @crs.on_continue
    def resumed() -> None:
        marks["continue"] = time.perf_counter()

    def phases(t0: float, t1: float) -> dict:
        return {"total_s": t1 - t0,
                "setup_s": marks.get("callback", t1) - t0,
                "save_commit_s": marks.get("continue", t1) - marks.get("callback", t0),
                "after_s": t1 - marks.get("continue", t1)}

    report(event="ready", pid=os.getpid(), active=crs.is_active(), nbytes=field.nbytes)
    stdin = sys.stdin.fileno()
    while True:
        t0 = time.perf_counter()
        crs.safe_point()
        t1 = time.perf_counter()
        if marks:  # a requested checkpoint ran in this safe point
            report(event="safe-point-checkpoint", **phases(t0, t1))
            marks.clear()
        readable, _, _ = select.select([stdin], [], [], 0.001)
        if not readable:
            continue
        line = sys.stdin.readline()
        cmd, _, arg = line.strip().partition(" ")
        if cmd in ("", "quit"):
            return
        try:
            if cmd == "ckpt":
                t0 = time.perf_counter()
                path = crs.checkpoint(arg)
                t1 = time.perf_counter()
                report(event="in-process-checkpoint", path=str(path), **phases(t0, t1))
                marks.clear()
            elif cmd == "refs":
                report(event="refs", **references(field))
            else:
                report(event="error", message=f"unknown command {cmd!r}")
        except Exception as exc:  # noqa: BLE001 - report and keep serving
            marks.clear()
            report(event="error", message=f"{cmd}: {type(exc).__name__}: {exc}")


def references(field: np.ndarray) -> dict:
    """Memory-only reference points for the same bytes: xxh3_128 as the snapshot hashes them, a
    memory copy through a 64 MiB buffer (no page faults), and filling N MiB of fresh memory
    (page faults: the memory a restore reads into is new to the process)."""
    view = memoryview(field).cast("B")
    t0 = time.perf_counter()
    h = xxhash.xxh3_128()
    for start in range(0, len(view), _CHUNK):
        h.update(view[start:start + _CHUNK])
    h.hexdigest()
    t1 = time.perf_counter()
    raw = field.view(np.uint8)
    buf = np.empty(min(64 << 20, raw.size), dtype=np.uint8)
    buf[:] = raw[: buf.size]  # fault the buffer in outside the timed part
    t2 = time.perf_counter()
    for start in range(0, raw.size, buf.size):
        part = raw[start:start + buf.size]
        buf[: part.size] = part
    t3 = time.perf_counter()
    fresh = np.ones(field.size, dtype=field.dtype)  # first touch of new memory, as a restore has
    t4 = time.perf_counter()
    del fresh
    return {"xxh3_s": t1 - t0, "memcpy_s": t3 - t2, "fresh_s": t4 - t3}


def spcost(calls: int, repeat: int) -> None:
    def empty() -> None:
        pass

    sp = crs.safe_point
    for i in range(repeat):  # alternate the order, so neither always runs first
        if i % 2:
            t_sp = timeit.timeit("f()", globals={"f": sp}, number=calls)
            t_empty = timeit.timeit("f()", globals={"f": empty}, number=calls)
        else:
            t_empty = timeit.timeit("f()", globals={"f": empty}, number=calls)
            t_sp = timeit.timeit("f()", globals={"f": sp}, number=calls)
        report(event="spcost", calls=calls, empty_ns=t_empty / calls * 1e9,
               safe_point_ns=t_sp / calls * 1e9, active=crs.is_active())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["serve", "spcost"])
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--calls", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=3)
    ns = p.parse_args()
    if ns.mode == "serve":
        if runtime.restart_snapshot() is not None:
            restart_mode(ns.size_mib)
        else:
            serve(ns.size_mib)
    else:
        spcost(ns.calls, ns.repeat)


if __name__ == "__main__":
    main()
