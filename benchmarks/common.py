"""Helpers shared by the benchmark scripts of this folder (run as ``python benchmarks/X.py``,
which puts this folder on sys.path): finding the venv's tools, running steps that report their
errors instead of stopping the run, medians, the page cache, ``dd``, and the report's pieces.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STEP_TIMEOUT = 900  # seconds any one subprocess may take before it counts as failed


# -- tools and processes -------------------------------------------------------------------------
def tool(name: str) -> str:
    """A program of this venv (the one running us), else from PATH."""
    beside = Path(sys.executable).parent / name  # not resolved: the venv's bin, not the base's
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name}: not found beside {sys.executable} nor on PATH")
    return found


class StepError(Exception):
    pass


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, raising StepError with its stderr when it fails."""
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT, **kw)
    except subprocess.TimeoutExpired:
        raise StepError(f"{Path(argv[0]).name}: no answer after {STEP_TIMEOUT} s") from None
    if cp.returncode != 0:
        err = (cp.stderr or cp.stdout).strip().splitlines()
        raise StepError(f"{Path(argv[0]).name} exited {cp.returncode}: {err[-1] if err else ''}")
    return cp


def records(text: str) -> list[dict]:
    """The ``BENCH <json>`` records an app printed."""
    out = []
    for line in text.splitlines():
        if line.startswith("BENCH "):
            try:
                out.append(json.loads(line[6:]))
            except ValueError:
                pass  # a line a launcher interleaved with another: not ours to judge
    return out


def kill_group(proc: subprocess.Popen) -> None:
    """End a job we started in a session of its own: its launcher and ranks, by process group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# -- results -------------------------------------------------------------------------------------
@dataclass
class Results:
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, value: float | None) -> None:
        if value is not None:
            self.samples.setdefault(key, []).append(value)

    def fail(self, key: str, exc: BaseException) -> None:
        msg = str(exc) if isinstance(exc, StepError) else f"{type(exc).__name__}: {exc}"
        self.errors.setdefault(key, []).append(msg)
        print(f"  ! {key}: {msg}", file=sys.stderr)
        if not isinstance(exc, StepError):
            traceback.print_exc(file=sys.stderr)

    def vals(self, key: str) -> list[float]:
        return self.samples.get(key, [])

    def median(self, key: str) -> float | None:
        v = self.vals(key)
        return statistics.median(v) if v else None


def step(res: Results, key: str, fn: Callable[[], None]) -> None:
    """Run one measurement; on failure record and print the error and go on."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not stop
        res.fail(key, exc)


# -- the page cache and the disk -----------------------------------------------------------------
def cache_method() -> tuple[str, str]:
    """How this run empties the page cache before each step: (method, note for the report)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches", "yes: sync; echo 3 > /proc/sys/vm/drop_caches before every step"
    except OSError as exc:
        if hasattr(os, "posix_fadvise"):
            return "fadvise", (f"drop_caches refused ({exc.strerror}); instead each file read is "
                               "synced and evicted with posix_fadvise(DONTNEED) before every step")
        return "none", f"no ({exc.strerror}): reads may be served from the page cache"


def evict(paths: list[Path], method: str) -> None:
    """Empty the page cache of ``paths`` (or all of it) before a timed step."""
    os.sync()
    if method == "drop_caches":
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    elif method == "fadvise":
        for p in paths:
            for f in (p.rglob("*") if p.is_dir() else [p]):
                if f.is_file():
                    fd = os.open(f, os.O_RDONLY)
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    finally:
                        os.close(fd)


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes in files, bytes allocated on disk) under ``path``."""
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), sum(p.stat().st_blocks * 512 for p in files)


def dd_write(img: Path, mib: int) -> float:
    """Seconds ``dd if=/dev/zero of=IMG bs=1M count=MIB conv=fdatasync`` takes; IMG is removed."""
    try:
        t0 = time.perf_counter()
        run(["dd", "if=/dev/zero", f"of={img}", "bs=1M", f"count={mib}", "conv=fdatasync"])
        return time.perf_counter() - t0
    finally:
        img.unlink(missing_ok=True)


def filesystem_of(path: Path) -> str:
    best = ("", "?", "?")
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if str(path).startswith(mnt.rstrip("/") + "/") and len(mnt) >= len(best[0]):
                    best = (mnt, fstype, dev)
    except OSError:
        pass
    return f"{best[1]} on {best[2]}"


def make_workdir(where: Path | None, prefix: str) -> Path:
    """A fresh directory inside ``where`` (default: the system temporary directory)."""
    base = (where or Path(tempfile.gettempdir())).absolute()
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


# -- the report ----------------------------------------------------------------------------------
def fmt(v: float | None, spec: str) -> str:
    """``v`` formatted with ``spec`` (width.precision), or a dash of the same width."""
    return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0]))


def host_line(res: Results, work: Path) -> str:
    return (f"  host: {os.cpu_count()} CPUs, Linux {platform.release()}, Python "
            f"{platform.python_version()}; directory {work.parent} ({res.info.get('fs', '?')})")


def error_lines(res: Results) -> list[str]:
    """The report's closing list of every distinct error, by step."""
    if not res.errors:
        return []
    out = ["", "Errors:"]
    for k, msgs in res.errors.items():
        for m in dict.fromkeys(msgs):
            out.append(f"  {k}: {m}")
    return out


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (matplotlib is in the ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def write_files(res: Results, args: Any, draw: Callable[[], None]) -> None:
    """What the run was asked to write besides the report: every sample with the arguments as
    JSON (``args.json``, where the script has that option) and the plot (``args.plot``, drawn
    there by ``draw``); each says why it was not written, and the run still ends well."""
    if getattr(args, "json", None):
        try:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                             "info": res.info, "samples": res.samples,
                                             "errors": res.errors}, indent=1))
        except OSError as exc:
            print(f"samples not written: {exc}", file=sys.stderr)
    if args.plot:
        try:
            draw()
            print(f"\nplot written to {args.plot}")
        except Exception as exc:  # noqa: BLE001
            print(f"\nplot not written: {type(exc).__name__}: {exc}", file=sys.stderr)
