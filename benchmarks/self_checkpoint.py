#!/usr/bin/env python3
"""Checkpoint and restore N MiB of numpy state with the ``self`` component, next to the disk.

One run, one directory, medians of ``--repeat`` runs:

1. ``dd if=/dev/zero of=DIR/dd.img bs=1M count=N conv=fdatasync``: the disk's own write speed;
2. ``opal-checkpoint -w DIR PID`` of a real process under ``pycrs run`` that holds an N MiB
   float64 array (benchmarks/self_checkpoint_app.py): the tool's wall time, and inside the app
   the time the safe point that took the checkpoint lasted; the snapshot's size;
3. ``crs.checkpoint(path)`` asked for by the same process, timed inside it;
4. restore: ``crs.restored()`` timed inside a process brought back by ``opal-restart``, and
   ``opal-restart`` end to end (with its verification pass alone, ``--showme``), next to ``cat``
   of the snapshot's data file, all from a cold page cache when the cache can be emptied
   (drop_caches as root, else fadvise DONTNEED);
5. ``crs.safe_point()`` with nothing pending, ns per call, next to an empty function call.

It reports; it asserts nothing. A step that fails prints its error and the run goes on. Every
file it writes lives in a fresh directory inside DIR, removed at the end.

    .venv/bin/python benchmarks/self_checkpoint.py [--size-mib 1024] [--dir DIR] [--repeat 3]
                                                   [--plot docs/images/self_checkpoint.png]
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import (
    STEP_TIMEOUT,
    Results,
    StepError,
    cache_method,
    dd_write,
    error_lines,
    evict,
    filesystem_of,
    fmt,
    host_line,
    make_workdir,
    pyplot,
    records,
    run,
    save_figure,
    step,
    tool,
    tree_size,
    write_files,
)

HERE = Path(__file__).resolve().parent
APP = HERE / "self_checkpoint_app.py"


# -- the app --------------------------------------------------------------------------------------
class App:
    """The benchmark app running under ``pycrs run``: commands on stdin, records on stdout."""

    def __init__(self, size_mib: int, cwd: Path) -> None:
        argv = [tool("pycrs"), "run", "--", sys.executable, str(APP), "serve",
                "--size-mib", str(size_mib)]
        self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.records: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.expect("ready", timeout=300)
        if not ready.get("active"):
            raise StepError("the app does not run under pycrs (runtime not active)")
        self.pid = int(ready["pid"])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("BENCH "):
                self.records.put(json.loads(line[6:]))
            else:
                sys.stderr.write(f"[app] {line}")
        self.records.put(None)

    def expect(self, event: str, timeout: float = STEP_TIMEOUT) -> dict:
        try:
            rec = self.records.get(timeout=timeout)
        except queue.Empty:
            raise StepError(f"the app sent no {event!r} record within {timeout:.0f} s") from None
        if rec is None:
            raise StepError(f"the app exited (status {self.proc.wait()}) before {event!r}")
        if rec.get("event") == "error":
            raise StepError(f"the app reported: {rec.get('message')}")
        if rec.get("event") != event:
            raise StepError(f"expected a {event!r} record from the app, got {rec}")
        return rec

    def command(self, line: str, event: str) -> dict:
        if self.proc.poll() is not None:
            raise StepError(f"the app is gone (status {self.proc.returncode})")
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.expect(event)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


# -- the measurements ----------------------------------------------------------------------------
def measure_dd(res: Results, work: Path, size_mib: int, method: str) -> None:
    evict([], method)
    res.add("dd", dd_write(work / "dd.img", size_mib))


def measure_tool_checkpoint(res: Results, app: App, work: Path, method: str) -> Path:
    evict([], method)
    t0 = time.perf_counter()
    cp = run([tool("opal-checkpoint"), "-w", str(work), str(app.pid)])
    wall = time.perf_counter() - t0
    inside = app.expect("safe-point-checkpoint", timeout=60)
    prefix = "Local Snapshot Reference: "
    refs = [line[len(prefix):] for line in cp.stdout.splitlines() if line.startswith(prefix)]
    if not refs:
        raise StepError(f"opal-checkpoint printed no snapshot reference: {cp.stdout.strip()!r}")
    snap = Path(refs[0])
    res.add("ckpt_tool", wall)
    res.add("ckpt_app", inside["total_s"])
    res.add("ckpt_app_setup", inside["setup_s"])
    res.add("ckpt_app_save", inside["save_commit_s"])
    size, alloc = tree_size(snap)
    res.info["snapshot_bytes"], res.info["snapshot_alloc"] = size, alloc
    res.info["snapshot_files"] = sorted(p.name for p in snap.iterdir())
    return snap


def measure_inprocess_checkpoint(res: Results, app: App, work: Path, method: str) -> None:
    snap = work / "in_process.ckpt"
    evict([], method)
    try:
        rec = app.command(f"ckpt {snap}", "in-process-checkpoint")
        res.add("ckpt_inproc", rec["total_s"])
        res.add("ckpt_inproc_save", rec["save_commit_s"])
    finally:
        shutil.rmtree(snap, ignore_errors=True)


def measure_read(res: Results, snap: Path, method: str) -> None:
    data = snap / "state.buffers"
    res.info["read_bytes"] = data.stat().st_size
    evict([data], method)
    t0 = time.perf_counter()
    with open(os.devnull, "w") as null:
        subprocess.run(["cat", str(data)], stdout=null, check=True, timeout=STEP_TIMEOUT)
    res.add("read_cat", time.perf_counter() - t0)


def restart(snap: Path, work: Path, evict_in_app: str) -> tuple[float, dict]:
    """Run opal-restart on ``snap``; (wall time, the restarted app's record)."""
    env = dict(os.environ, PYCRS_BENCH_EVICT=evict_in_app)
    t0 = time.perf_counter()
    cp = run([tool("opal-restart"), str(snap)], cwd=work, env=env, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    recs = [r for r in records(cp.stdout) if r.get("event") == "restored"]
    if not recs:
        raise StepError(f"the restarted app reported nothing: {cp.stdout.strip()[-200:]!r}")
    if not recs[0].get("ok"):
        raise StepError(f"the restarted app did not get its array back: {recs[0]}")
    return wall, recs[0]


def measure_restart(res: Results, snap: Path, work: Path, method: str) -> None:
    """opal-restart as a user runs it, from a cold cache: it verifies the snapshot (a full
    read), relaunches the app, whose crs.restored() then reads the data again (now cached)."""
    evict([snap], method)
    wall, rec = restart(snap, work, "none")
    res.add("restart_tool", wall)
    res.add("restore_app_warm", rec["restore_s"])


def measure_restore_cold(res: Results, snap: Path, work: Path, method: str) -> None:
    """crs.restored() from a cold cache: the restarted app empties the cache again first."""
    evict([snap], method)
    _, rec = restart(snap, work, method)
    res.add("restore_app", rec["restore_s"])


def measure_verify(res: Results, snap: Path, method: str) -> None:
    """opal-restart --showme: the tool's start-up and verification of the snapshot alone."""
    evict([snap], method)
    t0 = time.perf_counter()
    run([tool("opal-restart"), "--showme", str(snap)])
    res.add("restart_verify", time.perf_counter() - t0)


def measure_spcost(res: Results, calls: int, repeat: int, work: Path) -> None:
    cp = run([tool("pycrs"), "run", "--", sys.executable, str(APP), "spcost",
              "--calls", str(calls), "--repeat", str(repeat)], cwd=work)
    recs = [r for r in records(cp.stdout) if r.get("event") == "spcost"]
    if not recs:
        raise StepError("the app reported no safe_point timings")
    if not all(r.get("active") for r in recs):
        raise StepError("the timing process did not run under pycrs (runtime not active)")
    for r in recs:
        res.add("call_empty", r["empty_ns"])
        res.add("call_safe_point", r["safe_point_ns"])


# -- the report ----------------------------------------------------------------------------------
def render(res: Results, args: argparse.Namespace, work: Path, cache_note: str) -> str:
    n = args.size_mib
    med = res.median
    out: list[str] = []

    def err_note(*keys: str) -> str:
        errs = [f"{len(res.errors[k])} failed" for k in keys if res.errors.get(k)]
        return f"  ({', '.join(errs)})" if errs else ""

    def row(label: str, key: str, ref: str | None, mib: float | None = n) -> None:
        v, vals = med(key), res.samples.get(key, [])
        bw = mib / v if v and mib else None
        ratio = v / med(ref) if v is not None and ref and med(ref) else None
        out.append(f"  {label:<50} {fmt(v, '8.3f')} {fmt(min(vals) if vals else None, '8.3f')} "
                   f"{fmt(max(vals) if vals else None, '8.3f')} {fmt(bw, '9.0f')} "
                   f"{fmt(ratio, '7.2f')} {len(vals):>4}{err_note(key)}")

    head = (f"  {'':<50} {'median':>8} {'min':>8} {'max':>8} {'MiB/s':>9} {'ratio':>7} "
            f"{'runs':>4}")
    out.append(f"pycrs self checkpoint benchmark: {n} MiB of float64 state, median of "
               f"{args.repeat} runs")
    out.append(host_line(res, work))
    out.append(f"  page cache emptied before each step: {cache_note}")
    if "load" in res.info:
        out.append(f"  load average (1 min) at start / end: {res.info['load']} "
                   "(other work on the machine shows up in the timings)")
    out.append("")
    out.append(head)
    out.append("Write (seconds; ratio = time / dd)")
    row(f"dd bs=1M count={n} conv=fdatasync", "dd", "dd")
    row("opal-checkpoint, tool wall time", "ckpt_tool", "dd")
    row("opal-checkpoint, inside app (safe point)", "ckpt_app", "dd")
    row("  of which component/snapshot set-up", "ckpt_app_setup", None, None)
    row("  of which save + commit (pickle, write, fsync)", "ckpt_app_save", "dd")
    row("crs.checkpoint(path) in-process", "ckpt_inproc", "dd")
    if "snapshot_bytes" in res.info:
        size, alloc = int(res.info["snapshot_bytes"]), int(res.info["snapshot_alloc"])  # type: ignore[call-overload]
        out.append(f"  snapshot size: {size:,} bytes = {size / 2**20:.2f} MiB "
                   f"({size - (n << 20):+,} bytes beyond the array; {alloc / 2**20:.2f} MiB "
                   f"allocated; files {', '.join(res.info['snapshot_files'])})")  # type: ignore[arg-type]
    out.append("")
    out.append("Read / restore (seconds; ratio = time / cat)")
    rb = int(res.info.get("read_bytes", n << 20))  # type: ignore[call-overload]
    row(f"cat state.buffers > /dev/null ({rb / 2**20:.0f} MiB)", "read_cat", "read_cat", rb / 2**20)
    row("crs.restored() in the restarted app, cold cache", "restore_app", "read_cat")
    row("opal-restart end to end (verify+relaunch+load)", "restart_tool", "read_cat")
    row("  verify alone: opal-restart --showme", "restart_verify", "read_cat")
    row("  crs.restored() in it, warm after verify", "restore_app_warm", "read_cat")
    out.append("")
    out.append("Reference (seconds; ratio = time / dd)")
    row(f"xxh3_128 of {n} MiB in 8 MiB pieces", "ref_xxh3", "dd")
    row(f"memory copy of {n} MiB in 64 MiB pieces", "ref_memcpy", "dd")
    row(f"np.ones of {n} MiB: fresh memory, page faults", "ref_fresh", "dd")
    row("opal-checkpoint --help (tool start-up alone)", "tool_startup", None, None)
    out.append("")
    out.append(f"Safe point cost, in a process under pycrs ({args.calls:,} calls, timeit)")
    e, s = med("call_empty"), med("call_safe_point")
    out.append(f"  {'empty Python function call':<50} {fmt(e, '8.1f')} ns/call"
               f"{err_note('call_empty')}")
    out.append(f"  {'crs.safe_point(), nothing pending':<50} {fmt(s, '8.1f')} ns/call"
               + (f"   ({s / e:.2f}x the empty call)" if e and s else "")
               + err_note("call_safe_point"))
    out += error_lines(res)
    return "\n".join(out)


def plot(res: Results, path: Path, args: argparse.Namespace, cache_note: str) -> None:
    plt = pyplot()
    bars = [("dd\nfdatasync", "dd", "tab:gray"),
            ("opal-checkpoint\n(tool)", "ckpt_tool", "tab:blue"),
            ("opal-checkpoint\n(in app)", "ckpt_app", "tab:blue"),
            ("crs.checkpoint()\nin-process", "ckpt_inproc", "tab:blue"),
            ("cat\n(cold)", "read_cat", "tab:gray"),
            ("crs.restored()\n(in app, cold)", "restore_app", "tab:green"),
            ("opal-restart\n(end to end)", "restart_tool", "tab:green")]
    bars = [b for b in bars if res.median(b[1]) is not None]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = range(len(bars))
    vals = [res.median(k) for _, k, _ in bars]
    ax.bar(xs, vals, color=[c for _, _, c in bars])
    for x, v in zip(xs, vals, strict=True):
        ax.annotate(f"{v:.2f} s\n{args.size_mib / v:.0f} MiB/s", (x, v), ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [label for label, _, _ in bars], fontsize=8)
    ax.set_ylabel("seconds (median)")
    ax.set_ylim(0, max(vals) * 1.25)
    ax.set_title(f"pycrs self component: {args.size_mib} MiB of numpy state, "
                 f"median of {args.repeat} runs, {os.cpu_count()} CPUs", fontsize=10)
    save_figure(fig, path)


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024, help="state size in MiB (default 1024)")
    p.add_argument("--dir", type=Path, default=None,
                   help="directory to write in (default: the system temporary directory); a "
                        "fresh subdirectory is made there and removed at the end")
    p.add_argument("--repeat", type=int, default=3, help="runs of each step; medians are shown")
    p.add_argument("--calls", type=int, default=10_000_000, help="calls timed for safe_point()")
    p.add_argument("--plot", type=Path, default=None, help="write a bar chart (PNG) here")
    args = p.parse_args(argv)
    if args.size_mib <= 0 or args.repeat <= 0 or args.calls <= 0:
        p.error("--size-mib, --repeat and --calls must be positive")

    work = make_workdir(args.dir, "pycrs-bench-")
    res = Results()
    res.info["fs"] = filesystem_of(work)
    method, cache_note = cache_method()
    load0 = os.getloadavg()[0]
    app: App | None = None
    print(f"benchmarking in {work} ({res.info['fs']}), {args.size_mib} MiB, "
          f"{args.repeat} runs; page cache: {method}", file=sys.stderr)
    try:
        try:
            app = App(args.size_mib, work)
        except Exception as exc:  # noqa: BLE001
            for key in ("ckpt_tool", "ckpt_inproc", "restore_app"):
                res.fail(key, exc)
        for i in range(args.repeat):
            print(f"run {i + 1}/{args.repeat}", file=sys.stderr)
            step(res, "dd", lambda: measure_dd(res, work, args.size_mib, method))
            if app is None:
                continue
            snap: Path | None = None

            def tool_ckpt() -> None:
                nonlocal snap
                snap = measure_tool_checkpoint(res, app, work, method)  # type: ignore[arg-type]

            step(res, "ckpt_tool", tool_ckpt)
            if snap is not None:
                step(res, "read_cat", lambda: measure_read(res, snap, method))  # type: ignore[arg-type]
                step(res, "restore_app", lambda: measure_restore_cold(res, snap, work, method))  # type: ignore[arg-type]
                step(res, "restart_tool", lambda: measure_restart(res, snap, work, method))  # type: ignore[arg-type]
                step(res, "restart_verify", lambda: measure_verify(res, snap, method))  # type: ignore[arg-type]
                shutil.rmtree(snap, ignore_errors=True)
            step(res, "ckpt_inproc", lambda: measure_inprocess_checkpoint(res, app, work, method))  # type: ignore[arg-type]

            def refs() -> None:
                rec = app.command("refs", "refs")  # type: ignore[union-attr]
                res.add("ref_xxh3", rec["xxh3_s"])
                res.add("ref_memcpy", rec["memcpy_s"])
                res.add("ref_fresh", rec["fresh_s"])

            step(res, "ref_xxh3", refs)

            def startup() -> None:
                t0 = time.perf_counter()
                run([tool("opal-checkpoint"), "--help"])
                res.add("tool_startup", time.perf_counter() - t0)

            step(res, "tool_startup", startup)
        if app is not None:
            app.stop()
            app = None
        print("safe_point() cost", file=sys.stderr)
        step(res, "call_safe_point", lambda: measure_spcost(res, args.calls, args.repeat, work))
    except KeyboardInterrupt:
        print("interrupted: reporting what was measured", file=sys.stderr)
    finally:
        if app is not None:
            app.stop()
        shutil.rmtree(work, ignore_errors=True)
    res.info["load"] = f"{load0:.2f} / {os.getloadavg()[0]:.2f}"
    print(render(res, args, work, cache_note))
    write_files(res, args, lambda: plot(res, args.plot, args, cache_note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
