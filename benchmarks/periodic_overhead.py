"""What a job's own periodic checkpoints cost it (``snapc_base_period``).

    python benchmarks/periodic_overhead.py [--reps 2] [--mib 128] [--steps 600]
                                           [--periods 8 20] [--mtbf 120]

One 4-rank mpi4py job (MPICH) with a fixed amount of work: every rank holds MIB MiB of float64
(returned by its checkpoint callback, so that each checkpoint writes 4 x MIB MiB through the
``self`` component at a safe point) and runs STEPS steps of numpy work on a slice of it and an
``Allreduce``. It is run plain (the real ``mpiexec``, no C/R), under ``-am ft-enable-cr`` with no
checkpoint, with ``snapc_base_period`` at each of PERIODS seconds, and with ``auto`` for an MTBF
of MTBF seconds, the modes alternating REPS times. The report gives, per mode, the median wall
time of the job, its overhead against the plain run, the checkpoints taken, their measured cost
(request to commit, as mpirun measures it for ``auto``) and, for ``auto``, the interval it chose
last and the cost it computed that from (mpirun's ``snapc_base_verbose`` lines). Snapshots go to
a fresh directory (``--dir``, default the system's temporary directory), keeping the newest
sequence only; on a shared 2-core machine the figures are indicative.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, make_workdir, tool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RANKS = 4
#: mpirun's snapc_base_verbose line after each periodic checkpoint
LOGGED = re.compile(r"periodic checkpoint: sequence (\d+) took ([0-9.]+) s; next in ([0-9.]+) s"
                    r"(?: \(auto: cost ([0-9.]+) s)?")


def worker(steps: int, mib: int) -> None:
    """One rank of the job (see the module docstring)."""
    import numpy as np
    from mpi4py import MPI

    import crs

    comm = MPI.COMM_WORLD
    data = np.full(mib << 17, float(comm.Get_rank()))
    step, total = 0, 0.0

    @crs.on_checkpoint
    def save() -> dict:
        return {"step": step, "data": data, "total": total}

    slices = max(1, data.size >> 17)
    while step < steps:
        crs.safe_point()
        part = data[(step % slices) << 17:((step % slices) + 1) << 17]
        for _ in range(40):
            np.sqrt(part * part + 1.0, out=part)
        total += comm.allreduce(float(part[0]), op=MPI.SUM)
        step += 1
    if comm.Get_rank() == 0:
        print(f"result {total:.6f}", flush=True)


@dataclass
class Mode:
    name: str
    cr: bool
    mca: list[str] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    chosen: list[tuple[float, float]] = field(default_factory=list)  # (interval, cost) of auto
    results: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


def run_once(mode: Mode, args: argparse.Namespace, work: Path) -> None:
    app = [sys.executable, __file__, "--worker", str(args.steps), str(args.mib)]
    if mode.cr:
        cmd = [tool("mpirun"), "-am", "ft-enable-cr", "--mca", "snapc_base_global_snapshot_dir",
               str(work), "--mca", "snapc_base_keep", "1", "--mca", "snapc_base_verbose", "1",
               *mode.mca, "-np", str(RANKS), *app]
    else:
        cmd = [tool("mpiexec"), "-n", str(RANKS), *app]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYCRS_CONTROL_DIR": str(work / "control")}
    t0 = time.perf_counter()
    try:
        cp = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800,
                            stdin=subprocess.DEVNULL, cwd=work)
    except subprocess.TimeoutExpired:
        mode.errors.append("no end after 1800 s")
        return
    wall = time.perf_counter() - t0
    if cp.returncode != 0:
        err = cp.stderr.strip().splitlines()
        mode.errors.append(f"exit {cp.returncode}: {err[-1] if err else ''}")
        return
    mode.walls.append(wall)
    mode.results.add(next((ln for ln in cp.stdout.splitlines() if ln.startswith("result")), "?"))
    logged = [m for m in map(LOGGED.search, cp.stderr.splitlines()) if m]
    mode.counts.append(len(logged))
    mode.costs += [float(m[2]) for m in logged]
    if logged and logged[-1][4]:
        mode.chosen.append((float(logged[-1][3]), float(logged[-1][4])))
    for d in work.glob("ompi_global_snapshot_*.ckpt"):
        shutil.rmtree(d, ignore_errors=True)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def report(modes: list[Mode], args: argparse.Namespace, work: Path, loads: list[float]) -> None:
    plain = median(modes[0].walls)
    print(f"# {RANKS} ranks x {args.mib} MiB (one checkpoint writes {RANKS * args.mib} MiB), "
          f"{args.steps} steps, MPICH; median of {args.reps} alternating runs per mode")
    print(f"# load average {min(loads):.1f}-{max(loads):.1f} during the runs; {os.cpu_count()} "
          f"CPUs; snapshots in {work}")
    head = (f"{'mode':<30}{'wall s':>8}{'overhead':>10}{'ckpts':>7}{'ckpt cost s':>13}"
            f"{'auto interval s':>17}{'from cost s':>13}")
    print(head)
    for m in modes:
        wall = median(m.walls)
        over = f"{100 * (wall - plain) / plain:+.1f} %" if wall and plain and m is not modes[0] \
            else "-"
        count = f"{statistics.median(m.counts):g}" if m.counts and m.cr else "-"
        chosen = m.chosen[-1] if m.chosen else None
        print(f"{m.name:<30}{fmt(wall, '8.1f')}{over:>10}{count:>7}"
              f"{fmt(median(m.costs), '13.2f')}{fmt(chosen and chosen[0], '17.1f')}"
              f"{fmt(chosen and chosen[1], '13.2f')}")
    answers = set().union(*(m.results for m in modes))
    if len(answers) > 1:
        print(f"! the runs disagree on the job's result: {sorted(answers)}")
    for m in modes:
        for e in dict.fromkeys(m.errors):
            print(f"! {m.name}: {e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=2, help="runs of each mode (default 2)")
    ap.add_argument("--mib", type=int, default=128, help="MiB each rank holds (default 128)")
    ap.add_argument("--steps", type=int, default=600, help="steps of the job (default 600)")
    ap.add_argument("--periods", type=int, nargs=2, default=[8, 20], metavar="S",
                    help="the two fixed intervals, seconds (default 8 20)")
    ap.add_argument("--mtbf", type=int, default=120, help="MTBF for auto, seconds (default 120)")
    ap.add_argument("--dir", type=Path, default=None, help="where the snapshots go")
    a = ap.parse_args()
    if a.worker:
        return worker(*a.worker)
    work = make_workdir(a.dir, "pycrs-periodic-")
    (work / "control").mkdir(mode=0o700)
    modes = [Mode("plain mpiexec", False), Mode("ft-enable-cr, no checkpoint", True)]
    modes += [Mode(f"period {p} s", True, ["--mca", "snapc_base_period", str(p)])
              for p in a.periods]
    modes.append(Mode(f"auto, MTBF {a.mtbf} s", True, ["--mca", "snapc_base_period", "auto",
                                                        "--mca", "snapc_base_mtbf", str(a.mtbf)]))
    loads = []
    try:
        for rep in range(a.reps):  # alternating: a drifting machine load hits every mode alike
            for m in modes:
                loads.append(os.getloadavg()[0])
                run_once(m, a, work)
                print(f"  run {rep + 1}/{a.reps} {m.name}: "
                      f"{fmt(m.walls[-1] if m.walls else None, '6.1f')} s", file=sys.stderr)
        report(modes, a, work, loads)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
