#!/usr/bin/env python3
"""Coordinated checkpoints of mpi4py jobs (SnapC): cost of C/R mode, checkpoint time next to dd,
and the latency of the protocol. One run prints every table.

1. Cost of C/R mode: a 4-rank loop (``crs.safe_point()``, a small numpy update, an
   ``Allreduce``) under the plain launcher (``mpiexec -n 4``) and under ours
   (``mpirun -am ft-enable-cr -n 4``), run after run (A B A B ...). The loop is timed inside the
   application with ``MPI.Wtime()`` (max over ranks, start-up excluded); the total wall time of
   each job is shown apart. Then ``crs.safe_point()`` with nothing pending, ns per call, timed in
   each rank of the C/R job (the other ranks sleep meanwhile).
2. A global checkpoint of 1, 2 and 4 ranks x 256 MiB (each rank's ``@crs.on_checkpoint`` returns
   a 256 MiB numpy array) next to ``dd if=/dev/zero bs=1M count=TOTAL conv=fdatasync`` of the
   same total in the same directory: the wall time of ``ompi-checkpoint``, and the time from the
   request to the commit as the global coordinator reports it (a request sent straight to the
   job's endpoint, as ``ompi-checkpoint`` sends it, without the tool's start-up), split into the
   protocol's phases with the timestamps the ranks record in their checkpoint and continue
   callbacks.
3. Latency of the protocol: request to commit with a tiny state, several samples (also with
   ``crs_base_fsync`` off, to show what the fsyncs cost).

It reports; it asserts nothing. A step that fails prints its error and the run goes on. Every
file it writes lives in fresh directories (one in DIR, the control sockets in the system's
temporary directory), removed at the end.

    .venv/bin/python benchmarks/snapc_checkpoint.py [--dir DIR] [--repeat 5]
                                                    [--plot docs/images/snapc.png] [--json FILE]
"""
from __future__ import annotations

import argparse
import functools
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import common
from common import (
    STEP_TIMEOUT,
    Results,
    StepError,
    error_lines,
    filesystem_of,
    fmt,
    host_line,
    kill_group,
    make_workdir,
    pyplot,
    records,
    save_figure,
    step,
    tool,
    write_files,
)

HERE = Path(__file__).resolve().parent
APP = HERE / "snapc_checkpoint_app.py"
META_FILE = "global_snapshot_meta.data"


# -- tools and processes --------------------------------------------------------------------------
# every command in a session of its own: a job's launcher and ranks end together
run = functools.partial(common.run, start_new_session=True)


def mib_per_s(mib: float, seconds: float | None) -> float | None:
    return mib / seconds if seconds else None


# -- 1. cost of C/R mode on a loop with safe points ----------------------------------------------
def loop_job(res: Results, mode: str, args: argparse.Namespace, work: Path) -> None:
    app = [tool("python"), str(APP), "loop", "--iters", str(args.iters),
           "--calls", str(args.calls), "--repeat", "1"]
    if mode == "plain":
        cmd = [tool("mpiexec"), "-n", "4", *app]
    else:
        cmd = [tool("mpirun"), "-am", "ft-enable-cr", "--mca", "snapc_base_global_snapshot_dir",
               str(work), "-n", "4", *app]
    t0 = time.perf_counter()
    cp = run(cmd, cwd=work, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    recs = records(cp.stdout)
    loops = [r for r in recs if r.get("event") == "loop"]
    if not loops:
        raise StepError(f"{mode}: the job reported no loop time: {cp.stdout.strip()[-200:]!r}")
    rec = loops[0]
    want_cr = mode == "cr"
    if bool(rec.get("active")) != want_cr or bool(rec.get("coordinator")) != want_cr:
        raise StepError(f"{mode}: the ranks ran with runtime active={rec.get('active')}, "
                        f"app coordinator={rec.get('coordinator')}")
    res.add(f"loop_{mode}", rec["loop_s"])
    res.add(f"threads_{mode}", rec.get("pycrs_threads"))
    res.add(f"threadcpu_{mode}", rec.get("pycrs_threads_cpu_s"))
    if "user_s" in rec:
        res.add(f"cpu_{mode}", rec["user_s"] + rec["sys_s"])
        res.add(f"sys_{mode}", rec["sys_s"])
        res.add(f"vcsw_{mode}", rec["vol_switches"])
        res.add(f"ivcsw_{mode}", rec["invol_switches"])
    res.info[f"last_loop_{mode}"] = rec["loop_s"]
    res.add(f"wall_{mode}", wall)
    for r in recs:
        if r.get("event") == "spcost":
            res.add(f"sp_{mode}", r["safe_point_ns"])
            res.add(f"empty_{mode}", r["empty_ns"])


# -- 2./3. checkpoints of a running job ----------------------------------------------------------
class Job:
    """``mpirun -am ft-enable-cr -n N python app hold`` in a session of its own."""

    def __init__(self, nranks: int, mib: int, work: Path, extra_mca: list[str] = ()) -> None:  # type: ignore[assignment]
        self.nranks, self.mib, self.work = nranks, mib, work
        self.stop_file = work / f"stop-{nranks}-{mib}-{time.monotonic_ns()}"
        self.gbase = work / "global"
        self.gbase.mkdir(exist_ok=True)
        cmd = [tool("mpirun"), "-am", "ft-enable-cr", "--mca", "snapc_base_global_snapshot_dir",
               str(self.gbase), *extra_mca, "-n", str(nranks), tool("python"), str(APP), "hold",
               "--mib", str(mib), "--sleep", str(HOLD_SLEEP), "--stop-file", str(self.stop_file),
               "--max-seconds", "3600"]
        self.stderr_tail: list[str] = []
        self.proc = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     bufsize=1, start_new_session=True)
        self.jobid = self.proc.pid
        self.gdir = self.gbase / f"ompi_global_snapshot_{self.jobid}.ckpt"
        self.records: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        try:
            self._wait_until_up()
        except BaseException:
            kill_group(self.proc)
            shutil.rmtree(self.gdir, ignore_errors=True)
            raise

    def _wait_until_up(self) -> None:
        ready = self.expect("ready", timeout=300)
        if not ready.get("active") or not ready.get("coordinator"):
            raise StepError("the ranks do not run under SnapC (runtime or app coordinator off)")
        from snapc.coordinator import job_socket

        self.sock_path = job_socket(self.jobid)
        deadline = time.monotonic() + 60
        while not self.sock_path.exists():
            if time.monotonic() > deadline:
                raise StepError(f"no job endpoint {self.sock_path}")
            time.sleep(0.02)

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            for rec in records(line):
                self.records.put(rec)
        self.records.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip()])[-5:]
            sys.stderr.write(f"  [job {self.jobid}] {line}")

    def expect(self, event: str, timeout: float = STEP_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                rec = self.records.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise StepError(f"the job sent no {event!r} record within {timeout:.0f} s"
                                ) from None
            if rec is None:
                tail = "; ".join(self.stderr_tail[-2:])
                raise StepError(f"the job exited (status {self.proc.wait()}) before {event!r}"
                                + (f": {tail}" if tail else ""))
            if rec.get("event") == event:
                return rec

    def rank_records(self, since: float) -> list[dict]:
        """Every rank's record of the checkpoint requested at ``since`` (its callback
        timestamps); older records (of a checkpoint that failed) are skipped."""
        got: dict[int, dict] = {}
        while len(got) < self.nranks:
            rec = self.expect("checkpoint", timeout=120)
            if rec["cb"] >= since:
                got[rec["rank"]] = rec
        return [got[r] for r in sorted(got)]

    def drop_seq(self, seq: int) -> None:
        """Free the disk: the benchmark does not keep the snapshots it takes."""
        shutil.rmtree(self.gdir / str(seq), ignore_errors=True)

    def meta_mtime(self) -> float:
        return (self.gdir / META_FILE).stat().st_mtime

    def checkpoint_tool(self) -> tuple[float, float, list[dict]]:
        """``ompi-checkpoint JOBID``: (start time, wall time, rank records)."""
        os.sync()
        t0 = time.time()
        p0 = time.perf_counter()
        cp = run([tool("ompi-checkpoint"), str(self.jobid)])
        wall = time.perf_counter() - p0
        m = re.fullmatch(r"Snapshot Ref\.: (\d+) (\S+)\n", cp.stdout)
        if not m:
            raise StepError(f"ompi-checkpoint printed {cp.stdout.strip()!r}")
        ranks = self.rank_records(t0)
        self.last_meta = self.meta_mtime() - t0
        self.drop_seq(int(m.group(1)))
        return t0, wall, ranks

    def checkpoint_direct(self) -> tuple[dict[str, float], list[dict]]:
        """The request ``ompi-checkpoint`` sends, sent from here on the job's endpoint; the
        time (from the request) at which each of the coordinator's events arrived."""
        from crs import endpoint

        os.sync()
        sock = endpoint.connect(self.jobid, "job", self.sock_path)
        marks: dict[str, float] = {}
        t0 = time.time()

        def on_event(event: dict) -> None:
            now = time.time() - t0
            msg = str(event.get("message", ""))
            if "asking" in msg:
                marks["ask"] = now
            elif "meet at safe point" in msg:
                marks["meet"] = now
            elif "all ranks saved" in msg:
                marks["saved"] = now

        final = endpoint.request(sock, {"op": "checkpoint", "term": False, "stop": False,
                                        "nowait": False, "crs": None}, on_event,
                                 what=f"job {self.jobid}")
        marks["done"] = time.time() - t0
        if final.get("event") != "done":
            raise StepError(f"checkpoint failed: {final.get('message')}")
        ranks = self.rank_records(t0)
        marks["meta"] = self.meta_mtime() - t0
        marks["cb_first"] = min(r["cb"] for r in ranks) - t0
        marks["cb_last"] = max(r["cb"] for r in ranks) - t0
        marks["cont_last"] = max(r["cont"] for r in ranks) - t0
        marks["in_rank"] = max(r["cont"] - r["cb"] for r in ranks)
        self.drop_seq(int(final["seq"]))
        return marks, ranks

    def stop(self) -> None:
        try:
            self.stop_file.touch()
            bye = self.expect("bye", timeout=60)
            self.iter_period = bye.get("period_s")
            self.proc.wait(timeout=60)
        except (StepError, subprocess.TimeoutExpired, OSError):
            pass
        finally:
            kill_group(self.proc)
            shutil.rmtree(self.gdir, ignore_errors=True)
            self.stop_file.unlink(missing_ok=True)


HOLD_SLEEP = 0.001  # seconds each hold iteration sleeps (the ranks reach a safe point this often)


def measure_dd(res: Results, work: Path, total_mib: int, key: str) -> None:
    os.sync()
    res.add(key, common.dd_write(work / "dd.img", total_mib))


def record_direct(res: Results, prefix: str, marks: dict[str, float]) -> None:
    res.add(f"{prefix}_commit", marks["done"])
    res.add(f"{prefix}_meta", marks["meta"])
    res.add(f"{prefix}_ask", marks.get("ask"))
    res.add(f"{prefix}_agree", marks["meet"] - marks["ask"] if "meet" in marks and "ask" in marks
            else None)
    res.add(f"{prefix}_reach", marks["cb_first"] - marks["meet"] if "meet" in marks else None)
    res.add(f"{prefix}_save", marks["saved"] - marks["cb_first"] if "saved" in marks else None)
    res.add(f"{prefix}_commitphase", marks["done"] - marks["saved"] if "saved" in marks else None)
    res.add(f"{prefix}_skew", marks["cb_last"] - marks["cb_first"])
    res.add(f"{prefix}_inrank", marks["in_rank"])
    res.add(f"{prefix}_resume", marks["cont_last"] - marks["done"])


def checkpoint_sizes(res: Results, args: argparse.Namespace, work: Path) -> None:
    for nranks in (1, 2, 4):
        total = nranks * args.mib
        key = f"big{nranks}"
        print(f"checkpoints: {nranks} rank(s) x {args.mib} MiB", file=sys.stderr)
        job: Job | None = None
        try:
            job = Job(nranks, args.mib, work)
        except Exception as exc:  # noqa: BLE001 - dd is still measured
            res.fail(f"{key}_commit", exc)
        try:
            for i in range(args.repeat):
                print(f"  run {i + 1}/{args.repeat}", file=sys.stderr)

                def by_tool() -> None:
                    _, wall, _ = job.checkpoint_tool()  # type: ignore[union-attr]
                    res.add(f"{key}_tool", wall)
                    res.add(f"{key}_toolmeta", job.last_meta)  # type: ignore[union-attr]

                def direct() -> None:
                    marks, _ = job.checkpoint_direct()  # type: ignore[union-attr]
                    record_direct(res, key, marks)

                order = [("dd", lambda: measure_dd(res, work, total, f"{key}_dd"))]
                if job is not None:
                    order += [("tool", by_tool), ("commit", direct)]
                if i % 2:
                    order.reverse()  # neither always runs first
                for name, fn in order:
                    step(res, f"{key}_{name}", fn)
        finally:
            if job is not None:
                job.stop()


def latency(res: Results, args: argparse.Namespace, work: Path, key: str,
            extra_mca: list[str]) -> None:
    print(f"latency: 4 ranks, tiny state {' '.join(extra_mca)}", file=sys.stderr)
    try:
        job = Job(4, 0, work, extra_mca)
    except Exception as exc:  # noqa: BLE001
        res.fail(f"{key}_commit", exc)
        return
    try:
        step(res, f"{key}_warmup", lambda: job.checkpoint_direct() and None)  # first: Dup, mkdir
        for _ in range(args.samples):
            def direct() -> None:
                marks, _ = job.checkpoint_direct()
                record_direct(res, key, marks)

            def by_tool() -> None:
                _, wall, _ = job.checkpoint_tool()
                res.add(f"{key}_tool", wall)

            step(res, f"{key}_commit", direct)
            step(res, f"{key}_tool", by_tool)
    finally:
        job.stop()
        if getattr(job, "iter_period", None):
            res.info[f"{key}_period"] = job.iter_period


# -- the report ----------------------------------------------------------------------------------
def render(res: Results, args: argparse.Namespace, work: Path, skip: set[str]) -> str:
    out: list[str] = []

    def errs(*keys: str) -> str:
        n = sum(len(res.errors.get(k, [])) for k in keys)
        return f"  ({n} failed)" if n else ""

    out.append("pycrs SnapC benchmark: coordinated checkpoints of mpi4py jobs (MPICH)")
    out.append(host_line(res, work))
    out.append(f"  load average (1 min) at start / end: {res.info.get('load', '?')} "
               "(other work on the machine shows up in the timings)")

    if "loop" in skip:
        out += ["", "1. Cost of C/R mode: skipped"]
    else:
        render_loop(res, args, out, errs)
    if "size" in skip:
        out += ["", "2. Checkpoint time next to dd: skipped"]
    else:
        render_sizes(res, args, out, errs)
    if "latency" in skip:
        out += ["", "3. Latency of the protocol: skipped"]
    else:
        render_latency(res, args, out, errs)
    out += error_lines(res)
    return "\n".join(out)


def render_loop(res: Results, args: argparse.Namespace, out: list[str],
                errs: Callable[..., str]) -> None:
    med, vals = res.median, res.vals
    it = args.iters
    out.append("")
    out.append(f"1. Cost of C/R mode: 4 ranks x {it:,} iterations of safe_point() + numpy update "
               f"+ Allreduce; {args.repeat} runs of each, interleaved (A B A B ...)")
    out.append(f"  {'':<52} {'median':>8} {'min':>8} {'max':>8} {'us/iter':>8} {'runs':>5}")

    def row1(label: str, key: str, per_iter: bool = True) -> None:
        v = vals(key)
        m = med(key)
        out.append(f"  {label:<52} {fmt(m, '8.3f')} {fmt(min(v) if v else None, '8.3f')} "
                   f"{fmt(max(v) if v else None, '8.3f')} "
                   f"{fmt(m / it * 1e6 if m and per_iter else None, '8.2f')} {len(v):>5}"
                   f"{errs(key)}")

    row1("loop inside the app (s), plain mpiexec -n 4", "loop_plain")
    row1("loop inside the app (s), mpirun -am ft-enable-cr", "loop_cr")
    row1("job wall time (s), plain mpiexec -n 4", "wall_plain", False)
    row1("job wall time (s), mpirun -am ft-enable-cr", "wall_cr", False)
    lp, lc = med("loop_plain"), med("loop_cr")
    pairs = vals("loop_pair")
    if lp and lc:
        out.append(f"  C/R-mode overhead on the loop: {100 * (lc / lp - 1):+.2f} % (ratio of "
                   f"medians), {100 * (min(vals('loop_cr')) / min(vals('loop_plain')) - 1):+.2f} % "
                   "(ratio of minimums)")
    if pairs:
        out.append(f"    run by run (C/R / plain of each A/B pair): median "
                   f"{100 * statistics.median(pairs):+.2f} %, range {100 * min(pairs):+.1f} .. "
                   f"{100 * max(pairs):+.1f} % over {len(pairs)} pairs")
    for mode, label in (("plain", "plain"), ("cr", "C/R  ")):
        cpu, sys_, vc, ivc = (med(f"{k}_{mode}") for k in ("cpu", "sys", "vcsw", "ivcsw"))
        if cpu is not None:
            out.append(f"  4 ranks, per iteration, {label}: CPU {cpu / it * 1e6:7.1f} us (of which "
                       f"system {sys_ / it * 1e6:6.1f}), context switches {vc / it:5.2f} "
                       f"voluntary + {ivc / it:5.2f} involuntary (medians, getrusage)")
    wp, wc = med("wall_plain"), med("wall_cr")
    if wp and wc and lp and lc:
        out.append(f"  start-up and end of the job (wall - loop): plain {wp - lp:.2f} s, "
                   f"C/R {wc - lc:.2f} s ({wc - lc - (wp - lp):+.2f} s)")
    out.append("")
    out.append(f"  safe_point() cost inside a rank, nothing pending ({args.calls:,} calls each, "
               "timeit; one rank at a time)")
    for label, key in (("empty Python function call, C/R job", "empty_cr"),
                       ("crs.safe_point(), C/R job (app coordinator on)", "sp_cr"),
                       ("crs.safe_point(), plain job (runtime inactive)", "sp_plain")):
        out.append(f"  {label:<52} {fmt(med(key), '8.1f')} ns/call  (median of {len(vals(key))})"
                   f"{errs(key)}")
    sp, spp = med("sp_cr"), med("sp_plain")
    if sp and lc:
        out.append(f"  => safe_point() (called in both modes) is "
                   f"{100 * sp * 1e-9 / (lc / it):.3f} % "
                   f"of one iteration ({lc / it * 1e6:.1f} us) of this loop")
    if sp and spp and lc:
        out.append(f"     C/R mode changes its cost by {sp - spp:+.1f} ns/call = "
                   f"{100 * (sp - spp) * 1e-9 / (lc / it):+.3f} % of an iteration (same code: one "
                   "global test)")
    tc, nt = vals("threadcpu_cr"), vals("threads_cr")
    if tc:
        out.append(f"  CPU used by the {int(max(nt)) if nt else '?'} pycrs threads of the 4 C/R "
                   f"ranks during the loop: {1e3 * max(tc):.0f} ms at most over "
                   f"{len(tc)} runs (/proc, {1e3 / os.sysconf('SC_CLK_TCK'):.0f} ms ticks)")



def render_sizes(res: Results, args: argparse.Namespace, out: list[str],
                 errs: Callable[..., str]) -> None:
    med, vals = res.median, res.vals
    out.append("")
    out.append(f"2. Global checkpoint of N ranks x {args.mib} MiB (self component, fsync on) next "
               f"to dd of the same total; median of {args.repeat}")
    out.append(f"  {'ranks':>5} {'MiB':>6} | {'dd s':>6} {'MiB/s':>6} | {'ompi-ckpt s':>11} "
               f"{'MiB/s':>6} {'x dd':>5} | {'req->commit s':>13} {'MiB/s':>6} {'x dd':>5} "
               f"| {'max':>6}")
    for n in (1, 2, 4):
        k = f"big{n}"
        total = n * args.mib
        dd, tl, cm = med(f"{k}_dd"), med(f"{k}_tool"), med(f"{k}_commit")
        cmv = vals(f"{k}_commit")
        out.append(f"  {n:>5} {total:>6} | {fmt(dd, '6.2f')} {fmt(mib_per_s(total, dd), '6.0f')} "
                   f"| {fmt(tl, '11.2f')} {fmt(mib_per_s(total, tl), '6.0f')} "
                   f"{fmt(tl / dd if tl and dd else None, '5.2f')} | {fmt(cm, '13.2f')} "
                   f"{fmt(mib_per_s(total, cm), '6.0f')} "
                   f"{fmt(cm / dd if cm and dd else None, '5.2f')}"
                   f" | {fmt(max(cmv) if cmv else None, '6.2f')}"
                   f"{errs(f'{k}_dd', f'{k}_tool', f'{k}_commit')}")
    out.append("  Where the request->commit time goes (s, medians; timestamps of the coordinator's "
               "events and of the ranks' callbacks):")
    out.append(f"  {'ranks':>5} | {'queue':>6} {'agree':>6} {'reach':>6} {'save':>6} "
               f"{'commit':>6} | {'skew':>6} {'in rank':>7} {'resume':>6} | {'meta':>6} "
               f"{'tool meta':>9}")
    for n in (1, 2, 4):
        k = f"big{n}"
        out.append(f"  {n:>5} | {fmt(med(f'{k}_ask'), '6.3f')} {fmt(med(f'{k}_agree'), '6.3f')} "
                   f"{fmt(med(f'{k}_reach'), '6.3f')} {fmt(med(f'{k}_save'), '6.3f')} "
                   f"{fmt(med(f'{k}_commitphase'), '6.3f')} | {fmt(med(f'{k}_skew'), '6.3f')} "
                   f"{fmt(med(f'{k}_inrank'), '7.3f')} {fmt(med(f'{k}_resume'), '6.3f')} | "
                   f"{fmt(med(f'{k}_meta'), '6.3f')} {fmt(med(f'{k}_toolmeta'), '9.3f')}")
    out.append("    queue: request -> coordinator starts (\"asking N ranks\"); agree: -> ranks "
               "agree on a safe point; reach: -> first")
    out.append("    rank in its checkpoint callback; save: -> every rank saved (\"committing\"); "
               "commit: -> commit record written")
    out.append("    (\"done\"). skew: last - first callback; in rank: callback -> continue "
               "(longest rank); resume: done -> last")
    out.append("    continue callback; meta: mtime of global_snapshot_meta.data - request; "
               "tool meta: the same, from the start of ompi-checkpoint.")



def render_latency(res: Results, args: argparse.Namespace, out: list[str],
                   errs: Callable[..., str]) -> None:
    med, vals = res.median, res.vals
    out.append("")
    period = res.info.get("lat_period")
    out.append(f"3. Latency of the protocol: request -> commit, 4 ranks, tiny state, "
               f"{args.samples} samples per row" + (f" (ranks pass a safe point every "
                                                    f"{period * 1e3:.2f} ms)" if period else ""))
    out.append(f"  {'':<52} {'median':>8} {'min':>8} {'max':>8} {'n':>4}")

    def row3(label: str, key: str) -> None:
        v = vals(key)
        out.append(f"  {label:<52} {fmt(med(key) * 1e3 if v else None, '8.1f')} "
                   f"{fmt(min(v) * 1e3 if v else None, '8.1f')} "
                   f"{fmt(max(v) * 1e3 if v else None, '8.1f')} {len(v):>4}{errs(key)}")

    out.append("  (milliseconds)")
    row3("request -> commit (direct request), fsync on", "lat_commit")
    row3("  of which agree on a safe point", "lat_agree")
    row3("  of which reach it (-> first callback)", "lat_reach")
    row3("  of which save (-> all saved)", "lat_save")
    row3("  of which commit (-> done)", "lat_commitphase")
    row3("ompi-checkpoint wall time, fsync on", "lat_tool")
    row3("request -> commit, --mca crs_base_fsync 0", "latnf_commit")
    row3("  of which save (-> all saved)", "latnf_save")
    row3("  of which commit (-> done)", "latnf_commitphase")
    row3("ompi-checkpoint wall time, --mca crs_base_fsync 0", "latnf_tool")


def plot(res: Results, path: Path, args: argparse.Namespace) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    series = [("dd conv=fdatasync", "dd", "tab:gray"), ("ompi-checkpoint (tool)", "tool",
                                                         "tab:blue"),
              ("request -> commit", "commit", "tab:cyan")]
    width = 0.27
    for j, (label, suffix, color) in enumerate(series):
        xs, ys = [], []
        for i, n in enumerate((1, 2, 4)):
            m = res.median(f"big{n}_{suffix}")
            if m:
                xs.append(i + (j - 1) * width)
                ys.append(n * args.mib / m)
        ax1.bar(xs, ys, width, label=label, color=color)
        for x, y in zip(xs, ys, strict=True):
            ax1.annotate(f"{y:.0f}", (x, y), ha="center", va="bottom", fontsize=7)
    ax1.set_xticks(range(3), [f"{n} x {args.mib} MiB" for n in (1, 2, 4)])
    ax1.set_ylabel("MiB/s (median)")
    ax1.set_title("global checkpoint vs dd", fontsize=10)
    ax1.legend(fontsize=8)
    lat = [("fsync on", "lat_commit"), ("fsync off", "latnf_commit"),
           ("tool, fsync on", "lat_tool")]
    data = [[v * 1e3 for v in res.vals(k)] for _, k in lat]
    keep = [(label, d) for (label, _), d in zip(lat, data, strict=True) if d]
    if keep:
        ax2.boxplot([d for _, d in keep], tick_labels=[label for label, _ in keep])
    ax2.set_yscale("log")
    ax2.set_ylabel("ms (log scale)")
    ax2.set_title("request -> commit, 4 ranks, tiny state", fontsize=10)
    lp, lc = res.median("loop_plain"), res.median("loop_cr")
    over = f"; C/R-mode loop overhead {100 * (lc / lp - 1):+.2f} %" if lp and lc else ""
    fig.suptitle(f"pycrs SnapC, MPICH, {os.cpu_count()} CPUs, load {res.info.get('load', '?')}"
                 f"{over}", fontsize=10)
    save_figure(fig, path)


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=None,
                   help="directory to write in (default: the system temporary directory); a "
                        "fresh subdirectory is made there and removed at the end")
    p.add_argument("--repeat", type=int, default=5, help="runs of each step; medians are shown")
    p.add_argument("--iters", type=int, default=30_000, help="loop iterations in part 1")
    p.add_argument("--calls", type=int, default=1_000_000,
                   help="calls timed for safe_point(), in each rank")
    p.add_argument("--mib", type=int, default=256, help="state per rank in part 2, MiB")
    p.add_argument("--samples", type=int, default=10, help="latency samples in part 3")
    p.add_argument("--skip", default="", help="comma list of parts to skip: loop,size,latency")
    p.add_argument("--plot", type=Path, default=None, help="write a chart (PNG) here")
    p.add_argument("--json", type=Path, default=None, help="write every sample (JSON) here")
    args = p.parse_args(argv)
    if min(args.repeat, args.iters, args.calls, args.mib, args.samples) <= 0:
        p.error("--repeat, --iters, --calls, --mib and --samples must be positive")
    skip = set(filter(None, args.skip.split(",")))

    work = make_workdir(args.dir, "pycrs-snapc-bench-")
    # Our own control directory (short path: it holds Unix sockets): the jobs of this run are
    # the only ones ompi-checkpoint sees, and nothing is left in the user's.
    ctl = Path(tempfile.mkdtemp(prefix="pycrs-snapc-ctl-"))
    os.environ["PYCRS_CONTROL_DIR"] = str(ctl)
    res = Results()
    res.info["fs"] = filesystem_of(work)
    load0 = os.getloadavg()[0]
    print(f"benchmarking in {work} ({res.info['fs']}), {args.repeat} runs, load {load0:.2f}",
          file=sys.stderr)
    try:
        if "loop" not in skip:
            for i in range(args.repeat):
                print(f"loop run {i + 1}/{args.repeat}: plain, then C/R", file=sys.stderr)
                res.info.pop("last_loop_plain", None)
                res.info.pop("last_loop_cr", None)
                for mode in ("plain", "cr"):
                    step(res, f"loop_{mode}", lambda: loop_job(res, mode, args, work))
                if "last_loop_plain" in res.info and "last_loop_cr" in res.info:
                    res.add("loop_pair", res.info["last_loop_cr"] / res.info["last_loop_plain"] - 1)
        if "size" not in skip:
            checkpoint_sizes(res, args, work)
        if "latency" not in skip:
            latency(res, args, work, "lat", [])
            latency(res, args, work, "latnf", ["--mca", "crs_base_fsync", "0"])
    except KeyboardInterrupt:
        print("interrupted: reporting what was measured", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ctl, ignore_errors=True)
    res.info["load"] = f"{load0:.2f} / {os.getloadavg()[0]:.2f}"
    print(render(res, args, work, skip))
    write_files(res, args, lambda: plot(res, args.plot, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
