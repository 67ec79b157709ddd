"""What the MPI layer (snapc/crcp, preloaded into the ranks of a transparent C/R job) costs.

    python benchmarks/crcp_overhead.py [--reps 5] [--quick]

Runs one mpi4py worker under MPICH's mpiexec without and with libcrcp.so preloaded, the two
alternating REPS times in this one run, and prints medians of: ping-pong half round trip
(Send/Recv, 8 B to 1 MiB), streaming bandwidth (a window of Isend/Irecv, Waitall), Allreduce of
8 B and 1 MiB, Barrier. Then, with the layer, a cut/teardown/rebuild cycle in the same job (what
a checkpoint adds before and after the image) for 2 and 4 ranks, with messages in flight: the
time to the cut, the drain, the teardown and the rebuild (max over ranks, median of cycles).
On a shared 2-core machine the figures are indicative.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = [8, 4096, 262144, 1048576]


def worker(quick: bool, cycles: int) -> None:
    import numpy as np
    from mpi4py import MPI

    w = MPI.COMM_WORLD
    r, n = w.Get_rank(), w.Get_size()
    res: dict[str, float] = {}
    scale = 0.2 if quick else 1.0

    def iters(nbytes: int, base: int) -> int:
        return max(5, int(base * scale / (1 + nbytes / 16384)))

    def timed(k: int, step) -> float:
        for _ in range(max(3, k // 20)):
            step()
        w.Barrier()
        t0 = MPI.Wtime()
        for _ in range(k):
            step()
        return (MPI.Wtime() - t0) / k

    if not cycles:
        if r < 2:
            peer = 1 - r
            for sz in SIZES:
                buf = np.zeros(sz, dtype="b")

                def pingpong() -> None:
                    if r == 0:
                        w.Send(buf, peer, 1)
                        w.Recv(buf, peer, 1)
                    else:
                        w.Recv(buf, peer, 1)
                        w.Send(buf, peer, 1)
                res[f"ping-pong {sz} B, us"] = timed(iters(sz, 2000), pingpong) / 2 * 1e6
            window, big, ack = 16, np.zeros(1 << 20, dtype="b"), np.zeros(1, dtype="b")

            def stream() -> None:
                if r == 0:
                    MPI.Request.Waitall([w.Isend(big, 1, 2) for _ in range(window)])
                    w.Recv(ack, 1, 3)
                else:
                    MPI.Request.Waitall([w.Irecv(big, 0, 2) for _ in range(window)])
                    w.Send(ack, 0, 3)
            res["bandwidth 1 MiB messages, GB/s"] = window * big.size / timed(
                iters(4 << 20, 200), stream) / 1e9
        for sz in (8, 1 << 20):
            a = np.ones(sz // 8)
            b = np.empty_like(a)
            res[f"Allreduce {sz} B, us"] = timed(iters(sz, 1000), lambda: w.Allreduce(a, b)) * 1e6
        res["Barrier, us"] = timed(iters(0, 2000), w.Barrier) * 1e6
    else:
        import threading
        import time

        from snapc import crcp

        d, s = w.Dup(), w.Split(r % 2, r)
        stats: list[dict[str, float]] = []

        def traffic() -> None:  # messages in flight at the cuts (a fixed count: all ranks agree)
            buf = np.zeros(1024)
            for _ in range(3000):
                rq = [d.Isend(buf, (r + 1) % n, 5), d.Irecv(np.zeros(1024), (r - 1) % n, 5)]
                MPI.Request.Waitall(rq)
                s.Allreduce(np.ones(1), np.zeros(1))
        app = threading.Thread(target=traffic)
        app.start()
        for _ in range(cycles):
            time.sleep(0.05)
            crcp.quiesce()
            crcp.resume(False)
            stats.append(crcp.stats())
        app.join()
        gathered = w.gather(stats, root=0)
        if r == 0:
            for key in ("cut", "drain", "teardown", "rebuild"):
                res[f"{key}, ms"] = 1e3 * statistics.median(
                    max(rank[c][key] for rank in gathered) for c in range(cycles))
            res["messages drained per cut"] = statistics.mean(
                sum(rank[c]["drained_messages"] for rank in gathered) for c in range(cycles))
    if r == 0:
        print("BENCH " + json.dumps(res), flush=True)


def launch(n: int, layer: bool, quick: bool, cycles: int = 0) -> dict[str, float]:
    bin_ = Path(sys.executable).parent
    cmd = [str(bin_ / "mpiexec"), "-n", str(n)]
    if layer:
        from snapc import crcp
        cmd += ["-genv", "LD_PRELOAD", str(crcp.library_path()), "-genv", "PYCRS_CRCP", "1"]
    cmd += [sys.executable, __file__, "--worker", str(cycles)] + (["--quick"] if quick else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                         close_fds=True, stdin=subprocess.DEVNULL)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}"
                       f"\n{out.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    if a.worker is not None:
        return worker(a.quick, a.worker)
    plain, layer = [], []
    for _ in range(a.reps):  # alternating: a drifting machine load hits both alike
        plain.append(launch(2, False, a.quick))
        layer.append(launch(2, True, a.quick))
    load = os.getloadavg()[0]
    print(f"# MPICH, 2 ranks, median of {a.reps} alternating runs, load {load:.1f}")
    print(f"{'':<34}{'plain mpi4py':>14}{'with the layer':>16}")
    for key in plain[0]:
        p = statistics.median(x[key] for x in plain)
        q = statistics.median(x[key] for x in layer)
        print(f"{key:<34}{p:>14.2f}{q:>16.2f}")
    print()
    print("# a checkpoint's MPI part, in the same job (no image): max over ranks, "
          "median of 5 cycles")
    keys = ["cut, ms", "drain, ms", "teardown, ms", "rebuild, ms", "messages drained per cut"]
    print(f"{'ranks':<8}" + "".join(f"{k:>27}" for k in keys))
    for n in (2, 4):
        got = launch(n, True, a.quick, cycles=5)
        print(f"{n:<8}" + "".join(f"{got[k]:>27.1f}" for k in keys))


if __name__ == "__main__":
    main()
