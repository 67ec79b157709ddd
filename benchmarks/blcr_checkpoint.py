#!/usr/bin/env python3
"""Dump and restore a running process from outside with the ``blcr`` component, next to the disk.

For each size (default 1 GiB and 4 GiB), medians of ``--repeat`` rounds; in each round, a plain
Python process (benchmarks/blcr_checkpoint_app.py) allocates the array, writes every page of it
and keeps updating 64 KiB of it in a loop, and then, the tool and its reference interleaved
(their order swaps from one round to the next):

1. dump: ``dd if=/dev/zero of=DIR/dd.img bs=1M count=SIZE conv=fdatasync`` next to
   ``opal-checkpoint --mca crs blcr -w DIR -v PID`` (wall time; its own ``saved ... in X s``; the
   time the process was frozen, from the snapshot's ``BLCR Frozen Seconds``); the image's size.
   The process goes on after the dump; it is then ended and checks its whole array.
2. restore from a cold page cache (``sync; echo 3 > /proc/sys/vm/drop_caches`` before each step,
   when permitted): ``dd if=pages.img of=/dev/null bs=1M`` next to ``opal-restart -v --detach``,
   timed from its start to its ``restored process PID`` line (the process runs), with the tool's
   start-up, verification and rebuild told apart by the times its other -v lines arrive;
3. the same from a hot page cache (the image file resident, as mincore says);
4. memory-only references: CRC-32C of SIZE, a copy of SIZE, and the first touch of SIZE of fresh
   memory in 4 KiB pages and in huge pages.

Every restored process is ended and checks its array too. It reports; it asserts nothing. A step
that fails prints its error and the run goes on. The snapshots and every file written live in a
fresh directory inside DIR, removed at the end, and every process it started is ended.

    .venv/bin/python benchmarks/blcr_checkpoint.py [SIZE ...] [--quick] [--dir DIR] [--repeat 3]
                                                   [--plot docs/images/blcr_checkpoint.png]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
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
    kill_group,
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
APP = HERE / "blcr_checkpoint_app.py"
PAGES = "pages.img"
TARGET = 1.2  # the ratios the component aims at: dump / dd write, restore / plain read


# -- processes -----------------------------------------------------------------------------------
def become_subreaper() -> None:
    """Adopt our orphaned descendants: a process ``opal-restart --detach`` restored is left
    behind by the tool, and must come back to us to be waited for (prctl PR_SET_CHILD_SUBREAPER)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def wait_child(pid: int, timeout: float) -> int | None:
    """Reap our child ``pid``: its exit code, or None if it did not end within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


class Processes:
    """Every process of this run that may still be alive, to be ended whatever happens."""

    def __init__(self) -> None:
        self.tools: set[subprocess.Popen] = set()
        self.apps: set[int] = set()  # our children: apps we started, processes restored for us

    def end_app(self, pid: int, timeout: float = 300) -> int | None:
        """SIGTERM (the app checks its memory and exits), SIGKILL if it does not; its status."""
        code = None
        if parent_of(pid) == os.getpid():
            os.kill(pid, signal.SIGTERM)
            code = wait_child(pid, timeout)
            if code is None and parent_of(pid) == os.getpid():
                os.kill(pid, signal.SIGKILL)
                wait_child(pid, 30)
        if parent_of(pid) is None:
            self.apps.discard(pid)  # else not (yet) ours to wait for: kill_all sees to it
        return code

    def kill_all(self) -> None:
        for proc in list(self.tools):
            kill_group(proc)  # an unfinished restore: the tool, and the stub it forked
        self.tools.clear()
        deadline = time.monotonic() + 10
        for pid in list(self.apps):
            # a stub whose tool was just killed comes to us a moment later: wait for it
            while parent_of(pid) is not None and time.monotonic() < deadline:
                if parent_of(pid) == os.getpid():
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    wait_child(pid, 30)
                    break
                time.sleep(0.02)
        self.apps.clear()
        while True:  # any other orphan that came to us as subreaper, already ended
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


@dataclass
class ToolRun:
    wall: float
    stdout: str
    lines: list[tuple[float, str]]  # stderr lines, with the time since the start they came at

    def at(self, pattern: str) -> tuple[float, re.Match] | None:
        for t, line in self.lines:
            m = re.search(pattern, line)
            if m:
                return t, m
        return None


def run_timed(procs: Processes, argv: list[str], cwd: Path) -> ToolRun:
    """Run a tool in a session of its own; its wall time and its stderr lines as they came."""
    lines: list[tuple[float, str]] = []
    out: list[str] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
    procs.tools.add(proc)

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))

    def read_out() -> None:
        assert proc.stdout is not None
        out.append(proc.stdout.read())

    readers = [threading.Thread(target=f, daemon=True) for f in (read_err, read_out)]
    for r in readers:
        r.start()
    watchdog = threading.Timer(STEP_TIMEOUT, kill_group, [proc])
    watchdog.start()
    try:
        code = proc.wait()  # no timeout here: Popen.wait(timeout) polls, in up to 50 ms steps
        wall = time.perf_counter() - t0
    finally:
        watchdog.cancel()
    for r in readers:
        r.join(10)  # a detached process keeps no pipe of the tool's, but do not hang if it does
    procs.tools.discard(proc)
    if code != 0:
        err = [line for _, line in lines]
        raise StepError(f"{Path(argv[0]).name} exited {code}: {err[-1] if err else ''}")
    return ToolRun(wall, "".join(out), lines)


class App:
    """The held-memory app, its output in a log file that a restored process writes to again."""

    def __init__(self, procs: Processes, size_mib: int, work: Path, sleep: float,
                 env: dict[str, str] | None = None, data: str = "index") -> None:
        self.log = work / f"app-{size_mib}.log"
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(APP), "hold", "--size-mib", str(size_mib), "--sleep",
                 str(sleep), "--data", data], cwd=work, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                env={**os.environ, **(env or {})})
        self.pid = self.proc.pid
        procs.apps.add(self.pid)
        deadline = time.monotonic() + 600
        while not re.search(rf"^READY {self.pid} ", self.log.read_text(), re.M):
            if self.proc.poll() is not None:
                raise StepError(f"the app exited {self.proc.returncode} before it was ready: "
                                f"{self.log.read_text().strip()[-200:]!r}")
            if time.monotonic() > deadline:
                raise StepError("the app was not ready after 600 s")
            time.sleep(0.05)

    def bye(self, pid: int, since: float) -> bool:
        """Whether process ``pid`` said, after ``since``, that its whole array checked out."""
        for line in reversed(self.log.read_text().splitlines()):
            m = re.fullmatch(rf"BYE {pid} ok=(\d) .* t=([\d.]+)", line)
            if m and float(m.group(2)) >= since:
                return m.group(1) == "1"
        return False


# -- the page cache ------------------------------------------------------------------------------
def resident_fraction(path: Path) -> float:
    """The fraction of ``path``'s pages in the page cache (mincore on a shared mapping)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = path.stat().st_size
    if not size:
        return 1.0
    pages = (size + 4095) // 4096
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
            return 1 - bytes(vec).count(0) / pages
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


# -- the measurements ----------------------------------------------------------------------------
@dataclass
class Context:
    res: Results
    procs: Processes
    work: Path
    cold: bool  # the page cache can be emptied (drop_caches)
    sleep: float


def read_file(path: Path) -> float:
    t0 = time.perf_counter()
    run(["dd", f"if={path}", "of=/dev/null", "bs=1M"])
    return time.perf_counter() - t0


def opal_checkpoint(procs: Processes, work: Path, pid: int,
                    options: list[str]) -> tuple[ToolRun, Path]:
    """``opal-checkpoint OPTIONS -w WORK -v PID`` after a sync, timed; the run and its snapshot."""
    os.sync()
    r = run_timed(procs, [tool("opal-checkpoint"), *options, "-w", str(work), "-v", str(pid)],
                  work)
    m = re.search(r"^Local Snapshot Reference: (.+)$", r.stdout, re.M)
    if not m:
        raise StepError(f"opal-checkpoint printed no snapshot reference: {r.stdout.strip()!r}")
    return r, Path(m.group(1))


def measure_dump(ctx: Context, k: str, app: App) -> Path:
    r, snap = opal_checkpoint(ctx.procs, ctx.work, app.pid, ["--mca", "crs", "blcr"])
    res = ctx.res
    res.add(f"{k}:dump", r.wall)
    first = r.at(r"checkpointing process")
    res.add(f"{k}:dump_startup", first[0] if first else None)
    saved = r.at(r"saved process \d+ with blcr in ([\d.]+) s")
    inside = float(saved[1].group(1)) if saved else None
    res.add(f"{k}:dump_inside", inside)
    meta = (snap / "snapshot_meta.data").read_text()
    fm = re.search(r"^# BLCR Frozen Seconds: ([\d.]+)$", meta, re.M)
    frozen = float(fm.group(1)) if fm else None
    res.add(f"{k}:frozen", frozen)
    if inside is not None and frozen is not None:
        res.add(f"{k}:after_freeze", inside - frozen)
    total, alloc = tree_size(snap)
    res.info[f"{k}:pages_bytes"] = (snap / PAGES).stat().st_size
    res.info[f"{k}:total_bytes"] = total
    res.info[f"{k}:files"] = sorted(p.name for p in snap.iterdir())
    return snap


def measure_restore(ctx: Context, key: str, snap: Path, pid: int, app: App) -> None:
    """``opal-restart -v --detach``: to the process running, then end it (it checks itself)."""
    since = time.time()
    ctx.procs.apps.add(pid)  # from the moment it exists, it is ours to end
    r = run_timed(ctx.procs, [tool("opal-restart"), "-v", "--detach", str(snap)], ctx.work)
    restored = r.at(r"restored process (\d+)")
    if restored is None or int(restored[1].group(1)) != pid:
        raise StepError(f"opal-restart did not say it restored process {pid}: "
                        f"{[line for _, line in r.lines][-2:]}")
    verifying, restarting = r.at(r"verifying "), r.at(r"restarting with component")
    res = ctx.res
    res.add(key, restored[0])
    res.add(f"{key}_wall", r.wall)
    if verifying and restarting:
        res.add(f"{key}_startup", verifying[0])
        res.add(f"{key}_verify", restarting[0] - verifying[0])
        res.add(f"{key}_rebuild", restored[0] - restarting[0])
    if parent_of(pid) != os.getpid():
        raise StepError(f"process {pid} is not running as our child after the restore")
    code = ctx.procs.end_app(pid)
    check(ctx, key.split(":")[0], "restored", code == 0 and app.bye(pid, since))


def check(ctx: Context, k: str, what: str, ok: bool) -> None:
    n = ctx.res.info.setdefault(f"{k}:check_{what}", [0, 0])
    n[0] += int(ok)
    n[1] += 1
    if not ok:
        print(f"  ! {k}: a {what} process did not end with its memory intact", file=sys.stderr)


def ensure_resident(ctx: Context, k: str, path: Path) -> None:
    frac = resident_fraction(path)
    if frac < 0.99:  # memory pressure from elsewhere evicted part of it: read it back
        read_file(path)
        frac = resident_fraction(path)
    ctx.res.add(f"{k}:resident_hot", frac)


def drop_caches(ctx: Context, k: str, path: Path) -> None:
    evict([], "drop_caches")
    ctx.res.add(f"{k}:resident_cold", resident_fraction(path))


def one_round(ctx: Context, size: int, i: int) -> None:
    res, k = ctx.res, str(size)
    res.add(f"{k}:load", os.getloadavg()[0])
    app: App | None = None
    snap: Path | None = None
    try:
        try:
            app = App(ctx.procs, size, ctx.work, ctx.sleep)
        except Exception as exc:  # noqa: BLE001 - dd is still measured
            res.fail(f"{k}:dump", exc)

        def dump() -> None:
            nonlocal snap
            snap = measure_dump(ctx, k, app)  # type: ignore[arg-type]

        def dd() -> None:
            os.sync()
            res.add(f"{k}:dd_write", dd_write(ctx.work / "dd.img", size))

        pair = [("dd_write", dd)] + ([("dump", dump)] if app else [])
        for name, fn in (pair if i % 2 == 0 else pair[::-1]):
            step(res, f"{k}:{name}", fn)
        if app is None:
            return
        since = time.time()
        code = ctx.procs.end_app(app.pid)
        check(ctx, k, "original", code == 0 and app.bye(app.pid, since))
        if snap is None:
            return
        pages = snap / PAGES
        pid = app.pid

        def read(key: str, prepare: Callable) -> Callable[[], None]:
            def fn() -> None:
                prepare(ctx, k, pages)
                res.add(key, read_file(pages))
            return fn

        def restore(key: str, prepare: Callable) -> Callable[[], None]:
            def fn() -> None:
                prepare(ctx, k, pages)
                measure_restore(ctx, key, snap, pid, app)  # type: ignore[arg-type]
            return fn

        phases = [("cold", drop_caches)] if ctx.cold else []
        phases.append(("hot", ensure_resident))
        for phase, prepare in phases:
            pair = [(f"read_{phase}", read(f"{k}:read_{phase}", prepare)),
                    (f"restore_{phase}", restore(f"{k}:restore_{phase}", prepare))]
            for name, fn in (pair if i % 2 == 0 else pair[::-1]):
                step(res, f"{k}:{name}", fn)
    finally:
        if app is not None and app.pid in ctx.procs.apps:
            ctx.procs.end_app(app.pid, timeout=30)
        if snap is not None:
            shutil.rmtree(snap, ignore_errors=True)


def measure_refs(ctx: Context, size: int) -> None:
    cp = run([sys.executable, str(APP), "refs", "--size-mib", str(size)], cwd=ctx.work)
    recs = [r for r in records(cp.stdout) if r.get("event") == "refs"]
    if not recs:
        raise StepError("the app reported no reference timings")
    for name in ("crc32c", "memcpy", "touch_4k", "touch_thp"):
        ctx.res.add(f"{size}:ref_{name}", recs[0][f"{name}_s"])


# -- the report ----------------------------------------------------------------------------------
def size_label(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


def render(res: Results, args: argparse.Namespace, work: Path, cache_note: str) -> str:
    med = res.median
    out: list[str] = []
    out.append(f"pycrs blcr benchmark: dump and restore a running process holding "
               f"{', '.join(size_label(s) for s in args.sizes)} of numpy memory, from outside; "
               f"median of {args.repeat} rounds")
    out.append(host_line(res, work))
    out.append(f"  code: {res.info.get('code', '?')}")
    out.append(f"  page cache emptied before each cold step: {cache_note}")
    loads = [v for s in args.sizes for v in res.vals(f"{s}:load")]
    out.append(f"  load average (1/5/15 min) at start: {res.info.get('load0', '?')}, at end: "
               f"{res.info.get('load1', '?')}"
               + (f"; 1 min at each round's start: {min(loads):.2f} .. {max(loads):.2f}"
                  if loads else "") + " (2 CPUs: other work shows up in the timings)")
    head = (f"  {'':<56} {'median':>8} {'min':>8} {'max':>8} {'MiB/s':>7} {'ratio':>6} "
            f"{'runs':>4}")
    for size in args.sizes:
        k = str(size)
        img = res.info.get(f"{k}:pages_bytes")
        img_mib = img / 2**20 if img else None

        def errs(key: str) -> str:
            n = len(res.errors.get(f"{k}:{key}", []))
            return f"  ({n} failed)" if n else ""

        def row(label: str, key: str, ref: str | None, mib: float | None,
                err_key: str | None = None) -> None:
            v, vals = med(f"{k}:{key}"), res.vals(f"{k}:{key}")
            r = med(f"{k}:{ref}") if ref else None
            out.append(f"  {label:<56} {fmt(v, '8.3f')} {fmt(min(vals) if vals else None, '8.3f')} "
                       f"{fmt(max(vals) if vals else None, '8.3f')} "
                       f"{fmt(mib / v if v and mib else None, '7.0f')} "
                       f"{fmt(v / r if v is not None and r else None, '6.2f')} {len(vals):>4}"
                       + (errs(err_key) if err_key else ""))

        out.append("")
        out.append(f"{size_label(size)} process ({size} MiB array)")
        out.append(head)
        out.append(f"Dump (seconds; ratio = time / dd write; target {TARGET}x)")
        row(f"dd if=/dev/zero bs=1M count={size} conv=fdatasync", "dd_write", "dd_write", size,
            "dd_write")
        row("opal-checkpoint --mca crs blcr, wall time", "dump", "dd_write", img_mib, "dump")
        row("  tool start-up (to its first -v line)", "dump_startup", "dd_write", None)
        row("  saved in (the tool's own -v time)", "dump_inside", "dd_write", img_mib)
        row("    of which process frozen (copy, CRC, write)", "frozen", "dd_write", img_mib)
        row("    of which after the freeze (fsync, commit)", "after_freeze", "dd_write", None)
        if img:
            total = res.info.get(f"{k}:total_bytes", 0)
            files = res.info.get(f"{k}:files", [])
            out.append(f"  image: {PAGES} {img:,} bytes = {img / 2**20:.1f} MiB "
                       f"({img / 2**20 - size:+.1f} MiB beyond the array); all {len(files)} "
                       f"files {total:,} bytes = {total / 2**20:.1f} MiB")
        for phase in (("cold", "hot") if res.vals(f"{k}:read_cold") or res.errors.get(
                f"{k}:read_cold") else ("hot",)):
            out.append(f"Restore, {phase} page cache (seconds; ratio = time / dd read {phase}; "
                       f"target {TARGET}x)")
            row(f"dd if={PAGES} of=/dev/null bs=1M, {phase}", f"read_{phase}", f"read_{phase}",
                img_mib, f"read_{phase}")
            rk = f"restore_{phase}"
            row("opal-restart -v --detach, to \"restored process\"", rk, f"read_{phase}",
                img_mib, rk)
            row("  tool start-up (to \"verifying\")", f"{rk}_startup", f"read_{phase}", None)
            row("  verify (to \"restarting with component\")", f"{rk}_verify", f"read_{phase}",
                None)
            row("  rebuild: pages in, CRCs checked (to \"restored\")", f"{rk}_rebuild",
                f"read_{phase}", img_mib)
            row("opal-restart -v --detach, wall time (tool exit)", f"{rk}_wall", f"read_{phase}",
                img_mib)
        out.append("Reference, in memory (seconds; ratio = time / dd write)")
        row(f"CRC-32C of {size} MiB in 1 MiB pieces (the component's C)", "ref_crc32c",
            "dd_write", size, "refs")
        row(f"copy of {size} MiB through an 8 MiB buffer", "ref_memcpy", "dd_write", size)
        row(f"first touch of {size} MiB fresh memory, 4 KiB pages", "ref_touch_4k", "dd_write",
            size)
        row(f"first touch of {size} MiB fresh memory, MADV_HUGEPAGE", "ref_touch_thp",
            "dd_write", size)
        cold, hot = res.vals(f"{k}:resident_cold"), res.vals(f"{k}:resident_hot")
        checks = []
        for what in ("original", "restored"):
            n = res.info.get(f"{k}:check_{what}")
            if n:
                checks.append(f"{n[0]}/{n[1]} {what}")
        out.append("  " + "; ".join(
            ([f"{PAGES} in the page cache before cold steps at most {100 * max(cold):.1f} %"]
             if cold else [])
            + ([f"before hot steps at least {100 * min(hot):.1f} %"] if hot else [])
            + ([f"processes that ended with their whole array intact: {', '.join(checks)}"]
               if checks else [])))
    out.append("")
    out.append(f"Summary (medians, seconds; x = tool / reference, target {TARGET}x)")
    phases = ["cold", "hot"] if any(res.vals(f"{s}:read_cold") for s in args.sizes) else ["hot"]
    line = f"  {'size':>7} {'image MiB':>9} | {'dd write':>8} {'dump':>6} {'x':>5} {'frozen':>6}"
    for ph in phases:
        line += f" | {'read ' + ph:>9} {'restore':>7} {'x':>5}"
    out.append(line)
    for size in args.sizes:
        k = str(size)
        img = res.info.get(f"{k}:pages_bytes")
        dd, dump = med(f"{k}:dd_write"), med(f"{k}:dump")
        line = (f"  {size_label(size):>7} {fmt(img / 2**20 if img else None, '9.0f')} | "
                f"{fmt(dd, '8.2f')} {fmt(dump, '6.2f')} "
                f"{fmt(dump / dd if dump and dd else None, '5.2f')} "
                f"{fmt(med(f'{k}:frozen'), '6.2f')}")
        for ph in phases:
            rd, rs = med(f"{k}:read_{ph}"), med(f"{k}:restore_{ph}")
            line += (f" | {fmt(rd, '9.2f')} {fmt(rs, '7.2f')} "
                     f"{fmt(rs / rd if rs and rd else None, '5.2f')}")
        out.append(line)
    out += error_lines(res)
    return "\n".join(out)


def plot(res: Results, path: Path, args: argparse.Namespace) -> None:
    plt = pyplot()
    phases = ["cold", "hot"] if any(res.vals(f"{s}:read_cold") for s in args.sizes) else ["hot"]
    fig, axes = plt.subplots(1, 1 + len(phases), figsize=(4 + 3.5 * len(phases), 4.3))
    panels = [("dump", [("dd write\n(fdatasync)", "dd_write", None, "tab:gray"),
                        ("opal-checkpoint", "dump", "dd_write", "tab:blue"),
                        ("image / frozen time", "frozen", None, "tab:cyan")])]
    for ph in phases:
        panels.append((f"restore, {ph} cache",
                       [(f"dd read\n{ph}", f"read_{ph}", None, "tab:gray"),
                        ("opal-restart", f"restore_{ph}", f"read_{ph}", "tab:green")]))
    for ax, (title, bars) in zip(axes, panels, strict=True):
        width = 0.8 / len(bars)
        for j, (label, key, ref, color) in enumerate(bars):
            xs, ys, notes = [], [], []
            for i, size in enumerate(args.sizes):
                v = res.median(f"{size}:{key}")
                if not v:
                    if res.errors.get(f"{size}:{key}"):
                        ax.annotate("failed",
                                    (i + (j - (len(bars) - 1) / 2) * width, 0), ha="center",
                                    va="bottom", fontsize=7, color="tab:red")
                    continue
                mib = size if key == "dd_write" else res.info.get(f"{size}:pages_bytes", 0) / 2**20
                r = res.median(f"{size}:{ref}") if ref else None
                xs.append(i + (j - (len(bars) - 1) / 2) * width)
                ys.append(mib / v)
                notes.append(f"{mib / v:.0f}" + (f"\n{v / r:.2f}x" if r else ""))
            ax.bar(xs, ys, width, label=label.replace("\n", " "), color=color)
            for x, y, note in zip(xs, ys, notes, strict=True):
                ax.annotate(note, (x, y), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(args.sizes)), [size_label(s) for s in args.sizes])
        ax.set_xlim(-0.5, len(args.sizes) - 0.5)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.35)  # room for the notes and the legend
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("MiB/s (median; image bytes for the tools)")
    fig.suptitle(f"pycrs blcr component, median of {args.repeat} rounds, {os.cpu_count()} CPUs, "
                 f"load {res.info.get('load0', '?')} -> {res.info.get('load1', '?')}; "
                 f"ratios: time / reference (target {TARGET}x)", fontsize=9)
    save_figure(fig, path)


# -- main ----------------------------------------------------------------------------------------
def parse_size(text: str) -> int:
    """MiB from ``4G``, ``256M``, ``1.5GiB`` or a plain number of MiB."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([MG]?)(?:i?B)?", text.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1G, 4G, 256M)")
    mib = float(m.group(1)) * (1024 if m.group(2).upper() == "G" else 1)
    if mib < 1 or mib != int(mib):
        raise argparse.ArgumentTypeError(f"not a whole number of MiB: {text!r}")
    return int(mib)


def code_version() -> str:
    """The commit measured, and whether the component's tree differs from it (a benchmark of a
    work tree in progress must say so)."""
    try:
        head = subprocess.run(["git", "-C", str(HERE), "log", "-1", "--format=%h %cs"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--", "../crs"],
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    if not head:
        return "? (not a git checkout)"
    return head + (f" + uncommitted changes to {len(dirty)} file(s) under crs/" if dirty else "")


def parse_args(doc: str, argv: list[str] | None,
               more: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The options of a process benchmark (this one's and mtcp's); ``more`` adds its own."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sizes", nargs="*", type=parse_size, metavar="SIZE",
                   help="array sizes, e.g. 1G 4G 256M (default: 1G 4G)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 256 MiB, one round (unless SIZE or --repeat say otherwise)")
    p.add_argument("--dir", type=Path, default=None,
                   help="directory to write in (default: the system temporary directory); a "
                        "fresh subdirectory is made there and removed at the end")
    p.add_argument("--repeat", type=int, default=None,
                   help="rounds per size (default 3); medians are shown")
    p.add_argument("--sleep", type=float, default=0.001,
                   help="seconds the app sleeps between updates of its array (default 0.001)")
    p.add_argument("--plot", type=Path, default=None, help="write a chart (PNG) here")
    p.add_argument("--json", type=Path, default=None, help="write every sample (JSON) here")
    if more:
        more(p)
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([256] if args.quick else [1024, 4096])
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.repeat <= 0 or args.sleep < 0:
        p.error("--repeat must be positive and --sleep not negative")
    return args


def run_rounds(args: argparse.Namespace, procs: Processes, work: Path,
               each: Callable[[int, int], None]) -> None:
    """``each(size, round)`` for every round and size; then end every process and remove the
    work directory, also when interrupted (what was measured is still reported)."""
    try:
        for i in range(args.repeat):
            for size in args.sizes:
                print(f"round {i + 1}/{args.repeat}, {size_label(size)} "
                      f"(load {os.getloadavg()[0]:.2f})", file=sys.stderr)
                each(size, i)
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'Ctrl-C'}): reporting what was measured", file=sys.stderr)
    finally:
        procs.kill_all()
        shutil.rmtree(work, ignore_errors=True)


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)  # end our processes and remove the files on the way out
    become_subreaper()
    work = make_workdir(args.dir, "pycrs-blcr-bench-")
    res = Results()
    res.info["fs"] = filesystem_of(work)
    res.info["code"] = code_version()
    method, note = cache_method()
    if method != "drop_caches":
        note = (f"NO: drop_caches is not permitted here ({note.split(';')[0]}); cold-cache rows "
                "are left out, hot only")
    else:
        note = "yes: sync; echo 3 > /proc/sys/vm/drop_caches before every cold step"
    res.info["load0"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    procs = Processes()
    ctx = Context(res, procs, work, method == "drop_caches", args.sleep)
    print(f"benchmarking in {work} ({res.info['fs']}), sizes {args.sizes} MiB, {args.repeat} "
          f"rounds; page cache: {method}; load {res.info['load0']}", file=sys.stderr)

    def each(size: int, i: int) -> None:
        one_round(ctx, size, i)
        step(res, f"{size}:refs", lambda: measure_refs(ctx, size))

    run_rounds(args, procs, work, each)
    res.info["load1"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(render(res, args, work, note))
    write_files(res, args, lambda: plot(res, args.plot, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
