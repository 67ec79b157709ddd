"""The MPI application side of benchmarks/snapc_checkpoint.py (run in every rank).

Modes (results go to stdout as lines ``BENCH <json>``, from rank 0 unless said otherwise):

``loop --iters N --warmup W --points P``
    A loop with a safe point per iteration: ``crs.safe_point()``, a small numpy update of P
    float64, and an ``Allreduce`` of one double. The loop is timed with ``MPI.Wtime()`` inside
    every rank (start-up excluded); rank 0 reports the maximum over ranks, the CPU time and the
    context switches of all ranks (getrusage), and the CPU time the pycrs threads of all ranks
    used meanwhile (none exist without C/R). Then each rank in turn
    times ``crs.safe_point()`` with nothing pending and an empty function call (timeit), while
    the others wait without spinning.

``hold --mib M --sleep S``
    Each rank holds an M MiB float64 array returned by its ``@crs.on_checkpoint`` callback and
    loops: safe point, ``Allreduce`` (which also carries the "stop" flag), sleep S seconds. Every
    rank reports each checkpoint it took part in (``time.time()`` when its checkpoint callback
    ran and when its continue callback ran). The loop ends when the file named by --stop-file
    exists (all ranks leave at the same iteration) or after --max-seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
import timeit

import numpy as np
from mpi4py import MPI

import crs
from crs import runtime

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


def report(**record: object) -> None:
    sys.stdout.write("BENCH " + json.dumps(record) + "\n")
    sys.stdout.flush()


def quiet_barrier() -> None:
    """A barrier that sleeps instead of spinning (MPICH's blocking calls busy-poll, which on an
    oversubscribed machine would steal the CPU from the rank being timed)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(0.002)


def coordinator_installed() -> bool:
    return runtime._coordinator is not None  # noqa: SLF001 - reported, not relied upon


def pycrs_threads_cpu() -> tuple[int, float]:
    """(how many, CPU seconds used so far) of this process's pycrs threads (control endpoint,
    app coordinator), read from /proc: what C/R mode runs beside the application."""
    tick = os.sysconf("SC_CLK_TCK")
    n, ticks = 0, 0
    for t in threading.enumerate():
        if t.name.startswith("pycrs") and t.native_id is not None:
            try:
                with open(f"/proc/self/task/{t.native_id}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
                n += 1
            except OSError:
                pass
    return n, ticks / tick


def loop(iters: int, warmup: int, points: int, calls: int, repeat: int) -> None:
    x = np.linspace(0.0, 1.0, points) + rank
    local, total = np.zeros(1), np.zeros(1)
    safe_point = crs.safe_point

    def body(n: int) -> None:
        nonlocal x
        for _ in range(n):
            safe_point()
            x *= 0.999
            x += 0.001
            local[0] = x[0] + x[-1]
            comm.Allreduce(local, total, op=MPI.SUM)

    body(warmup)
    comm.Barrier()
    _, cpu0 = pycrs_threads_cpu()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = MPI.Wtime()
    body(iters)
    elapsed = MPI.Wtime() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    nthreads, cpu1 = pycrs_threads_cpu()
    usage = np.array([ru1.ru_utime - ru0.ru_utime, ru1.ru_stime - ru0.ru_stime,
                      ru1.ru_nvcsw - ru0.ru_nvcsw, ru1.ru_nivcsw - ru0.ru_nivcsw])
    usage_sum = np.zeros_like(usage)
    comm.Reduce(usage, usage_sum, op=MPI.SUM, root=0)
    longest = comm.reduce(elapsed, op=MPI.MAX, root=0)
    shortest = comm.reduce(elapsed, op=MPI.MIN, root=0)
    thread_cpu = comm.reduce(cpu1 - cpu0, op=MPI.SUM, root=0)
    nthreads = comm.reduce(nthreads, op=MPI.SUM, root=0)
    if rank == 0:
        report(event="loop", iters=iters, loop_s=longest, loop_min_s=shortest,
               active=crs.is_active(), coordinator=coordinator_installed(), size=size,
               pycrs_threads=nthreads, pycrs_threads_cpu_s=thread_cpu, user_s=usage_sum[0],
               sys_s=usage_sum[1], vol_switches=usage_sum[2], invol_switches=usage_sum[3],
               checksum=float(total[0]))

    # safe_point() with nothing pending, one rank at a time while the others sleep
    def empty() -> None:
        pass

    for r in range(size):
        if r == rank:
            for i in range(repeat):  # alternate the order, so neither always runs first
                pair = [("empty", empty), ("safe_point", safe_point)]
                if i % 2:
                    pair.reverse()
                got = {name: timeit.timeit("f()", globals={"f": f}, number=calls) / calls * 1e9
                       for name, f in pair}
                report(event="spcost", rank=rank, calls=calls, empty_ns=got["empty"],
                       safe_point_ns=got["safe_point"], active=crs.is_active(),
                       coordinator=coordinator_installed())
        quiet_barrier()


def hold(mib: int, sleep: float, stop_file: str, max_seconds: float) -> None:
    field = np.full((mib << 20) // 8, float(rank + 1))  # every page touched
    marks: dict[str, float] = {}
    taken = 0

    @crs.on_checkpoint
    def save() -> dict:
        marks["cb"] = time.time()
        return {"field": field, "rank": rank}

    @crs.on_continue
    def resumed() -> None:
        marks["cont"] = time.time()

    flags, out = np.zeros(1), np.zeros(1)
    quiet_barrier()
    if rank == 0:
        report(event="ready", active=crs.is_active(), coordinator=coordinator_installed(),
               size=size, nbytes=field.nbytes)
    started = time.monotonic()
    deadline = started + max_seconds
    iteration, in_checkpoints = 0, 0.0
    while True:
        t0 = time.time()
        crs.safe_point()
        if "cont" in marks:  # a checkpoint was taken in this safe point
            taken += 1
            leave = time.time()
            in_checkpoints += leave - t0
            report(event="checkpoint", rank=rank, n=taken, safe_point_enter=t0, cb=marks["cb"],
                   cont=marks["cont"], leave=leave, iteration=iteration)
            marks.clear()
        flags[0] = 1.0 if (os.path.exists(stop_file) or time.monotonic() > deadline) else 0.0
        comm.Allreduce(flags, out, op=MPI.MAX)
        if out[0]:
            break
        iteration += 1
        if sleep:
            time.sleep(sleep)
    quiet_barrier()
    if rank == 0:
        report(event="bye", iterations=iteration,
               period_s=(time.monotonic() - started - in_checkpoints) / max(iteration, 1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["loop", "hold"])
    p.add_argument("--iters", type=int, default=20000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--points", type=int, default=256)
    p.add_argument("--calls", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--sleep", type=float, default=0.001)
    p.add_argument("--stop-file", default="")
    p.add_argument("--max-seconds", type=float, default=3600.0)
    ns = p.parse_args()
    if ns.mode == "loop":
        loop(ns.iters, ns.warmup, ns.points, ns.calls, ns.repeat)
    else:
        hold(ns.mib, ns.sleep, ns.stop_file, ns.max_seconds)


if __name__ == "__main__":
    main()
