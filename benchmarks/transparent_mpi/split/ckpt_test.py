#!/usr/bin/env python
"""End-to-end check of the split-process candidate: ring_app.py (unmodified mpi4py) run plain,
then under the helpers with a checkpoint at several moments, the job killed (--term), restarted
from the snapshot by a new job, and the combined output compared with the plain run's
(per rank, in order). Also a checkpoint that lets the job continue.

    python ckpt_test.py [--mpi mpich|openmpi] [--delays 0.3,0.9,1.7] [--iters 30] [--nap 0.05]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
VENV = {"mpich": ROOT / ".venv", "openmpi": ROOT / ".venv-openmpi"}
LAUNCH = {"mpich": [], "openmpi": ["--oversubscribe", "--allow-run-as-root"]}


def lines_by_rank(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    # the launcher may glue two ranks' lines together: split at each "rank N it|final"
    for piece in re.split(r"(?=rank \d+ (?:it|final) )", text):
        piece = piece.split("\n")[0].strip()  # (opal-restart --detach prints the PID it restored)
        if piece.startswith("rank "):
            out.setdefault(piece.split()[1], []).append(piece)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpi", default="mpich", choices=VENV)
    ap.add_argument("--delays", default="0.3,0.9,1.7")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--nap", type=float, default=0.05)
    ap.add_argument("-n", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--app", default="ring_app.py", help="ring_app.py or skew_app.py")
    ap.add_argument("--restart-mpi", choices=VENV, help="restart under this MPI (default: --mpi)")
    a = ap.parse_args()
    py = str(VENV[a.mpi] / "bin" / "python")
    mpiexec = [str(VENV[a.mpi] / "bin" / "mpiexec")] + LAUNCH[a.mpi] + ["-n", str(a.n)]
    app = [str(HERE / a.app), str(a.iters), str(a.nap)]
    helper = [py, str(HERE / "helper.py")]
    ref = subprocess.run(mpiexec + [py] + app, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    want = lines_by_rank(ref.stdout)
    print(f"plain mpi4py ({a.mpi}): {sum(map(len, want.values()))} lines; "
          f"{[v[-1] for v in want.values()]}")
    rows, fails = [], 0
    for mode in ["term"] * len(a.delays.split(",")) + ["cont"]:
        delay = float(a.delays.split(",")[len(rows)]) if mode == "term" else 1.0
        ck = Path(tempfile.mkdtemp(prefix="split-ck-", dir="/tmp"))
        env = dict(os.environ, SPLIT_CKPT_DIR=str(ck))
        t0 = time.perf_counter()
        job = subprocess.Popen(mpiexec + helper + ["--"] + app, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        (ck / "request").write_text(f"c1 {mode}\n")
        out1, err1 = job.communicate(timeout=300)
        (ck / "request").unlink()
        row = {"mode": mode, "delay_s": delay, "rc1": job.returncode}
        times = [json.loads((ck / "c1" / f"rank_{r}.times.json").read_text())
                 for r in range(a.n) if (ck / "c1" / f"rank_{r}.times.json").exists()]
        row["ckpt"] = times
        out = out1
        if mode == "term":
            if not (ck / "c1" / "done").exists():
                if job.returncode == 0 and not (ck / "c1").exists():
                    print(f"(at {delay} s the job had already finished: no checkpoint taken)")
                else:
                    print("checkpoint failed:", err1[-2000:])
                    fails += 1
                continue
            env2 = {k: v for k, v in os.environ.items() if k != "SPLIT_CKPT_DIR"}
            t1 = time.perf_counter()
            rm = a.restart_mpi or a.mpi
            mpiexec2 = [str(VENV[rm] / "bin" / "mpiexec")] + LAUNCH[rm] + ["-n", str(a.n)]
            helper2 = [str(VENV[rm] / "bin" / "python"), str(HERE / "helper.py")]
            job2 = subprocess.run(mpiexec2 + helper2 + ["--restart", str(ck / "c1")], env=env2,
                                  capture_output=True, text=True, timeout=300)
            row["restart_job_s"] = time.perf_counter() - t1
            row["rc2"] = job2.returncode
            row["restart_err"] = [ln for ln in job2.stderr.splitlines() if "[split]" in ln
                                  or "rror" in ln][-3:]
            out = out1 + job2.stdout
        got = lines_by_rank(out)
        row["lines_before_ckpt"] = sum(len(v) for v in lines_by_rank(out1).values())
        row["same"] = got == want
        fails += not row["same"]
        rows.append(row)
        if not row["same"]:
            for rk in sorted(set(want) | set(got)):
                w, g = want.get(rk, []), got.get(rk, [])
                i = next((i for i, (x, y) in enumerate(zip(w, g)) if x != y), min(len(w), len(g)))
                print(f"DIFF rank {rk}: {len(w)} vs {len(g)} lines, first difference at {i}:")
                print("   want:", w[i:i + 2], "\n   got: ", g[i:i + 2])
            print("stderr:", err1[-800:], job2.stderr[-800:] if mode == "term" else "")
        if not a.keep:
            shutil.rmtree(ck, ignore_errors=True)
    print()
    print(f"{'mode':5} {'at s':>5} {'lines':>5} {'rounds':>6} {'cut ms':>7} {'drain ms':>8} {'opal-ckpt s':>11} "
          f"{'restart job s':>13} {'buffered':>8} {'pending':>7} same  blocked in (rank 0 / 1)")
    for r in rows:
        t = r["ckpt"]
        f = lambda k, m=1: "/".join(f"{x[k] * m:.1f}" if isinstance(x[k], float) else str(x[k])
                                    for x in t)  # noqa: E731
        print(f"{r['mode']:5} {r['delay_s']:5.1f} {r['lines_before_ckpt']:5d} {f('rounds'):>6} "
              f"{f('cut_s', 1e3):>7} "
              f"{f('drain_s', 1e3):>8} {f('opal_checkpoint_s'):>11} "
              f"{r.get('restart_job_s', 0):13.2f} {f('buffered_msgs'):>8} {f('pending_reqs'):>7} "
              f"{'yes' if r['same'] else 'NO':4}  {' / '.join(str(x['app_blocked_in']) for x in t)}")
        for ln in r.get("restart_err", []):
            print("    ", ln)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
