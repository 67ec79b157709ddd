#!/usr/bin/env python
"""Runtime cost of the split process next to plain mpi4py, in one run: bench_app.py (unmodified
mpi4py code) under plain `mpiexec -n 2 python` and under `mpiexec -n 2 python helper.py --`, for
MPICH and/or Open MPI. Prints a table: ping-pong latency 8 B..1 MiB (half round trip), streaming
bandwidth, Allreduce 8 B / 1 MiB, object allreduce, Barrier; medians of REPS repetitions.
Timings are indicative (2 shared cores, other jobs running).

    python bench.py [--mpi mpich,openmpi] [--reps 5] [--bind]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
VENV = {"mpich": ROOT / ".venv", "openmpi": ROOT / ".venv-openmpi"}
LAUNCH = {"mpich": [], "openmpi": ["--oversubscribe", "--allow-run-as-root"]}
BIND = {"mpich": ["-bind-to", "core"], "openmpi": ["--bind-to", "core"]}


def run(mpi: str, split: bool, reps: int, bind: bool) -> dict | str:
    py = str(VENV[mpi] / "bin" / "python")
    cmd = [str(VENV[mpi] / "bin" / "mpiexec")] + LAUNCH[mpi] + (BIND[mpi] if bind else [])
    cmd += ["-n", "2", py] + ([str(HERE / "helper.py"), "--"] if split else [])
    cmd += [str(HERE / "bench_app.py"), str(reps)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "timeout"
    for ln in p.stdout.splitlines():
        if ln.startswith("BENCH "):
            return json.loads(ln[6:])
    return f"failed ({p.returncode}): {p.stderr.strip()[-300:]}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpi", default="mpich,openmpi")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--bind", action="store_true", help="bind each rank (helper and app) to a core")
    a = ap.parse_args()
    print(f"# split process vs plain mpi4py, 2 ranks, medians of {a.reps} repetitions, "
          f"{os.cpu_count()} cores, bind={a.bind}, load {os.getloadavg()[0]:.1f} (indicative)")
    env_spin = {k: v for k, v in os.environ.items() if k.startswith("SPLIT_")}
    if env_spin:
        print(f"# {env_spin}")
    for mpi in a.mpi.split(","):
        plain, split = run(mpi, False, a.reps, a.bind), run(mpi, True, a.reps, a.bind)
        print(f"\n## {mpi}")
        for name, r in (("plain", plain), ("split", split)):
            if isinstance(r, str):
                print(f"{name}: {r}")
        if isinstance(plain, str) or isinstance(split, str):
            continue
        print(f"{'metric':28} {'plain':>12} {'split':>12} {'split/plain':>12}")
        for k in plain:
            p, s = plain[k], split[k]
            print(f"{k:28} {p:12.2f} {s:12.2f} {s / p:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
