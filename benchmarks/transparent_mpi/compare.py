#!/usr/bin/env python3
"""The figures of docs/design/transparent-mpi.md, in one run: each candidate's benchmark next to
plain mpi4py (which each runs alternately with its own), on MPICH and on Open MPI.

    .venv/bin/python benchmarks/transparent_mpi/compare.py [--reps 5] [--mpi mpich,openmpi]

(a) reinit/bench.py: mpi4py with and without the interposition layer, the layer's cost per call
    in C, and its teardown/rebuild times. (b) split/bench.py --bind: plain mpi4py and the split
    process, each rank's helper and application bound to one core (one rank per core, as a real
    job runs). It reports; it asserts nothing. Both need the two environments `make test` makes.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def section(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ {' '.join(argv)}  (load {os.getloadavg()[0]:.2f})", flush=True)
    t0 = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    print(res.stdout.rstrip())
    if res.returncode:
        print(f"(exit status {res.returncode}) {res.stderr.strip()[-500:]}")
    print(f"({time.monotonic() - t0:.0f} s)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mpi", default="mpich,openmpi")
    a = ap.parse_args()
    uname = os.uname()
    print(f"transparent MPI candidates: {os.cpu_count()} CPUs, {uname.sysname} {uname.release}, "
          f"load {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    py = sys.executable
    for mpi in a.mpi.split(","):
        section(f"(a) interposition with teardown/rebuild, {mpi}",
                [py, str(HERE / "reinit" / "bench.py"), "--reps", str(a.reps), "--mpi", mpi])
        section(f"(b) split process, {mpi}",
                [py, str(HERE / "split" / "bench.py"), "--reps", str(a.reps), "--mpi", mpi,
                 "--bind"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
