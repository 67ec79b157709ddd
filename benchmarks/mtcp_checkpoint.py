#!/usr/bin/env python3
"""Checkpoint a running process with the ``mtcp`` kernel, held or forked, raw or compressed,
next to the disk; and restart it.

For each size (default 1 GiB and 4 GiB), medians of ``--repeat`` rounds. In each round a Python
process with the kernel preloaded (benchmarks/blcr_checkpoint_app.py ``hold --data mix``: half
random float64, half a quantized field that compresses well) is checkpointed once per configuration
(its first checkpoint, held, reported apart; held while written; forked; forked with ``fast`` and
with ``strong`` compression), next to ``dd if=/dev/zero bs=1M count=SIZE conv=fdatasync`` (their
order swaps from one round to the next). For each: the time the application was blocked (``MTCP
Frozen Seconds``), the time until the kernel had written the image (``MTCP Write Seconds``), the
time until the snapshot was committed, fsynced (``opal-checkpoint -v``'s own "saved ... in"), the
tool's wall time, and the size of ``pages.img``. After each forked checkpoint the process is
SIGKILLed and restarted from it (``opal-restart -v --detach``, timed to its ``restored process``
line: the process runs again), and the restored process is the one the next configuration
checkpoints; the last one is ended and checks its whole array. Each image is restarted by both
restorers in turn (RESTART_MODES: the restart program, then the blcr restorer through ptrace,
killed again in between), so that they are compared on the same image.

It reports; it asserts nothing. A step that fails prints its error and the run goes on. The
snapshots live in a fresh directory inside DIR, removed at the end, and every process it started
is ended.

    .venv/bin/python benchmarks/mtcp_checkpoint.py [SIZE ...] [--quick] [--dir DIR] [--repeat 3]
        [--plot docs/images/mtcp_checkpoint.png]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from blcr_checkpoint import (
    App,
    Processes,
    become_subreaper,
    code_version,
    interrupted,
    opal_checkpoint,
    parent_of,
    parse_args,
    run_rounds,
    run_timed,
    size_label,
    wait_child,
)
from common import (
    Results,
    StepError,
    dd_write,
    error_lines,
    filesystem_of,
    fmt,
    host_line,
    make_workdir,
    pyplot,
    save_figure,
    step,
    tool,
    write_files,
)

from crs.plugins.mtcp import library_path

PAGES = "pages.img"
TARGET = 1.2  # the write of an image against dd's of the same size
FORKED = ("crs_mtcp_forked", "1")
CONFIGS = {  # key: (label, parameters, restarted from)
    # a process's first checkpoint is slower whatever the mode (measured: 1.3-1.9x the next
    # ones): it gets a row of its own, so that it does not weigh on the first mode measured
    "first": ("first checkpoint, held", [], False),
    "held": ("held while written (crs_mtcp_forked 0)", [], False),
    "forked": ("forked (crs_mtcp_forked 1)", [FORKED], True),
    "fast": ("forked, crs_mtcp_compress fast", [FORKED, ("crs_mtcp_compress", "fast")], True),
    "strong": ("forked, crs_mtcp_compress strong", [FORKED, ("crs_mtcp_compress", "strong")],
               True),
}
# How opal-restart is asked for each restorer; the last one's process goes on.
RESTART_MODES: dict[str, list[str]] = {"ptrace": ["--mca", "crs_mtcp_restart", "ptrace"],
                                       "program": []}


@dataclass
class Context:
    res: Results
    procs: Processes
    work: Path
    sleep: float


def meta_value(snap: Path, name: str) -> float | None:
    m = re.search(rf"^# {name}: ([\d.]+)", (snap / "snapshot_meta.data").read_text(), re.M)
    return float(m.group(1)) if m else None


def checkpoint(ctx: Context, k: str, cfg: str, pid: int) -> Path:
    settings = [x for name, value in CONFIGS[cfg][1] for x in ("--mca", name, value)]
    r, snap = opal_checkpoint(ctx.procs, ctx.work, pid, ["--mca", "crs", "mtcp", *settings])
    res = ctx.res
    res.add(f"{k}:{cfg}:wall", r.wall)
    saved = r.at(r"saved process \d+ with mtcp in ([\d.]+) s")
    res.add(f"{k}:{cfg}:saved", float(saved[1].group(1)) if saved else None)
    res.add(f"{k}:{cfg}:frozen", meta_value(snap, "MTCP Frozen Seconds"))
    res.add(f"{k}:{cfg}:written", meta_value(snap, "MTCP Write Seconds"))
    res.add(f"{k}:{cfg}:image_mib", (snap / PAGES).stat().st_size / 2**20)
    return snap


def restart(ctx: Context, k: str, cfg: str, snap: Path, pid: int) -> None:
    """For each restorer: SIGKILL the process, restart it from ``snap``: it is the same PID
    again, our child."""
    for mode, args in RESTART_MODES.items():
        os.kill(pid, signal.SIGKILL)
        if wait_child(pid, 60) is None and parent_of(pid) is not None:
            raise StepError(f"process {pid} did not end after SIGKILL")
        r = run_timed(ctx.procs, [tool("opal-restart"), "-v", "--detach", *args, str(snap)],
                      ctx.work)
        restored = r.at(r"restored process (\d+)")
        if restored is None or int(restored[1].group(1)) != pid:
            raise StepError(f"opal-restart ({mode}) did not say it restored process {pid}: "
                            f"{[line for _, line in r.lines][-2:]}")
        ctx.res.add(f"{k}:{cfg}:restart:{mode}", restored[0])
        if parent_of(pid) != os.getpid():
            raise StepError(f"process {pid} is not running as our child after the restart")


def one_round(ctx: Context, size: int, i: int) -> None:
    res, k = ctx.res, str(size)
    res.add(f"{k}:load", os.getloadavg()[0])

    def dd() -> None:
        os.sync()
        res.add(f"{k}:dd_write", dd_write(ctx.work / "dd.img", size))

    if i % 2 == 0:
        step(res, f"{k}:dd_write", dd)
    try:
        app = App(ctx.procs, size, ctx.work, ctx.sleep, env={"LD_PRELOAD": str(library_path())},
                  data="mix")
    except Exception as exc:  # noqa: BLE001 - dd is still measured
        res.fail(f"{k}:app", exc)
        app = None
    pid, alive = (app.pid, True) if app else (0, False)
    since = time.time()
    for cfg, (_, _, restarted) in CONFIGS.items():
        if not alive:
            break
        snap: Path | None = None
        try:
            snap = checkpoint(ctx, k, cfg, pid)
            if restarted:
                since = time.time()
                restart(ctx, k, cfg, snap, pid)
        except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not stop
            res.fail(f"{k}:{cfg}", exc)
            alive = parent_of(pid) == os.getpid()
        finally:
            if snap is not None:
                shutil.rmtree(snap, ignore_errors=True)
    if alive and app:
        code = ctx.procs.end_app(pid)
        n = res.info.setdefault(f"{k}:checks", [0, 0])
        n[0] += int(code == 0 and app.bye(pid, since))
        n[1] += 1
    if i % 2 == 1:
        step(res, f"{k}:dd_write", dd)


# -- the report ----------------------------------------------------------------------------------
def render(res: Results, args: argparse.Namespace, work: Path) -> str:
    med = res.median
    out = [f"pycrs mtcp benchmark: checkpoint a running Python process holding "
           f"{', '.join(size_label(s) for s in args.sizes)} of numpy memory (half random "
           f"float64, half a quantized field), held or forked, raw or compressed, restarted by "
           f"the restart program and by ptrace; median of {args.repeat} rounds",
           host_line(res, work), f"  code: {res.info.get('code', '?')}"]
    loads = [v for s in args.sizes for v in res.vals(f"{s}:load")]
    out.append(f"  load average (1/5/15 min) at start: {res.info.get('load0', '?')}, at end: "
               f"{res.info.get('load1', '?')}"
               + (f"; 1 min at each round's start: {min(loads):.2f} .. {max(loads):.2f}"
                  if loads else "") + " (2 CPUs: other work shows up in the timings)")
    for size in args.sizes:
        k = str(size)
        dd = med(f"{k}:dd_write")
        out += ["", f"{size_label(size)} process ({size} MiB array); seconds, medians; "
                f"x = saved / dd write (target {TARGET}x)",
                f"  {'':<40} {'blocked':>8} {'written':>8} {'saved':>8} {'x':>5} {'wall':>7} "
                f"{'image MiB':>9} {'program':>8} {'ptrace':>8} {'runs':>4}",
                f"  {f'dd bs=1M count={size} conv=fdatasync':<40} {'':>8} {'':>8} "
                f"{fmt(dd, '8.3f')} {fmt(1.0 if dd else None, '5.2f')} {'':>7} {size:>9} "
                f"{'':>8} {'':>8} {len(res.vals(f'{k}:dd_write')):>4}"]
        for cfg, (label, _, _) in CONFIGS.items():
            saved = med(f"{k}:{cfg}:saved")
            failed = len(res.errors.get(f"{k}:{cfg}", []))
            out.append(f"  {label:<40} {fmt(med(f'{k}:{cfg}:frozen'), '8.3f')} "
                       f"{fmt(med(f'{k}:{cfg}:written'), '8.3f')} {fmt(saved, '8.3f')} "
                       f"{fmt(saved / dd if saved and dd else None, '5.2f')} "
                       f"{fmt(med(f'{k}:{cfg}:wall'), '7.3f')} "
                       f"{fmt(med(f'{k}:{cfg}:image_mib'), '9.0f')} "
                       f"{fmt(med(f'{k}:{cfg}:restart:program'), '8.3f')} "
                       f"{fmt(med(f'{k}:{cfg}:restart:ptrace'), '8.3f')} "
                       f"{len(res.vals(f'{k}:{cfg}:saved')):>4}"
                       + (f"  ({failed} failed)" if failed else ""))
        n = res.info.get(f"{k}:checks")
        if n:
            out.append(f"  processes that ended with their whole array intact after the restarts: "
                       f"{n[0]}/{n[1]}")
    out += ["", "blocked: the application held (MTCP Frozen Seconds); written: until the kernel "
            "had written the image; saved: until the snapshot was committed, fsynced "
            "(opal-checkpoint -v); wall: the tool from its start; program, ptrace: restart by the "
            "restart program and by the blcr restorer, opal-restart -v --detach to \"restored "
            "process\", from that row's image (a cache as warm as just written)"]
    out += error_lines(res)
    return "\n".join(out)


def plot(res: Results, path: Path, args: argparse.Namespace) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.3))
    cfgs = list(CONFIGS)
    width = 0.8 / len(cfgs)
    colors = ["tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:purple"]
    panels = [("blocked (hatched) and saved, seconds", ["frozen", "saved"]),
              ("pages.img, MiB", ["image_mib"]),
              ("restart to running (restart program), seconds", ["restart:program"])]
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for j, cfg in enumerate(cfgs):
            for key in keys:
                xs = [i + (j - (len(cfgs) - 1) / 2) * width for i in range(len(args.sizes))]
                ys = [res.median(f"{s}:{cfg}:{key}") or 0 for s in args.sizes]
                ax.bar(xs, ys, width, color=colors[j], alpha=1.0 if key != "saved" else 0.45,
                       hatch="//" if key == "frozen" else None,
                       label=CONFIGS[cfg][0] if key == keys[-1] else None)
                for x, y in zip(xs, ys, strict=True):
                    if y:
                        ax.annotate(f"{y:.2f}" if key != "image_mib" else f"{y:.0f}", (x, y),
                                    ha="center", va="bottom", fontsize=6)
        if keys == ["frozen", "saved"]:
            for i, s in enumerate(args.sizes):
                dd = res.median(f"{s}:dd_write")
                if dd:
                    ax.hlines(dd, i - 0.45, i + 0.45, colors="k", linestyles="dashed",
                              label="dd conv=fdatasync" if i == 0 else None)
        ax.set_xticks(range(len(args.sizes)), [size_label(s) for s in args.sizes])
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"pycrs mtcp component, median of {args.repeat} rounds, {os.cpu_count()} CPUs, "
                 f"load {res.info.get('load0', '?')} -> {res.info.get('load1', '?')}",
                 fontsize=9)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    become_subreaper()
    work = make_workdir(args.dir, "pycrs-mtcp-bench-")
    res = Results()
    res.info["fs"] = filesystem_of(work)
    res.info["code"] = code_version()
    res.info["load0"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    procs = Processes()
    ctx = Context(res, procs, work, args.sleep)
    print(f"benchmarking in {work} ({res.info['fs']}), sizes {args.sizes} MiB, {args.repeat} "
          f"rounds; load {res.info['load0']}", file=sys.stderr)
    run_rounds(args, procs, work, lambda size, i: one_round(ctx, size, i))
    res.info["load1"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(render(res, args, work))
    write_files(res, args, lambda: plot(res, args.plot, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
