"""How the tools show a long operation: a bar with the bytes so far and their rate while it runs
(on a terminal only, and only once it has taken more than DELAY seconds), and a one-line summary
of size, time and rate when it succeeded.

The bytes are real: the files of the snapshot as they grow on disk (checkpoints), or the bytes a
restart has read and checked so far (``Meter``). ``rich`` draws the bar; it is imported only
when a bar is drawn.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

#: seconds an operation runs before its bar appears: short ones stay quiet
DELAY = 1.0
#: seconds between two looks at the bytes
POLL = 0.1
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units, three significant figures: "1.21 GiB", "360 MiB"."""
    unit = 0
    while n >= 999.5 and unit < len(_UNITS) - 1:  # three figures: 999.7 would show as 1e+03
        n /= 1024
        unit += 1
    if unit == 0:
        return f"{int(n)} B"
    return f"{n:.3g} {_UNITS[unit]}"


def summary(nbytes: int, seconds: float) -> str:
    """"1.21 GiB in 3.40 s, 364 MiB/s": the size, time and rate of an operation."""
    rate = human_bytes(nbytes / seconds) + "/s" if seconds > 0 else "-"
    return f"{human_bytes(nbytes)} in {seconds:.2f} s, {rate}"


def tree_bytes(*roots: Path) -> int:
    """The bytes of the regular files under ``roots`` now; files and directories that vanish
    while they are counted (a snapshot being renamed into place) count as nothing."""
    total = 0
    for root in roots:
        for top, _, files in os.walk(root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(top, name)).st_size
                except OSError:
                    pass
    return total


class Meter:
    """Bytes an operation has done so far: counted here (``add``) and by native code, which
    advances a counter of its own while it runs (``native.Counter``); read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = 0
        self._counters: list[Any] = []

    def add(self, nbytes: int) -> None:
        with self._lock:
            self._done += nbytes

    def counter(self) -> Any:
        """A native counter whose bytes count here from now on."""
        from . import native

        c = native.Counter()
        with self._lock:
            self._counters.append(c)
        return c

    def __call__(self) -> int:
        with self._lock:
            return self._done + sum(c.value for c in self._counters)


class Bar:
    """A context manager around one operation. While it runs, ``measure()`` (bytes so far) is
    drawn as a bar with the rate on ``stream``, when that is a terminal, from DELAY seconds on;
    the bar is erased at the end. ``elapsed`` is the operation's time."""

    def __init__(self, what: str, measure: Callable[[], int],
                 stream: IO[str] | None = None) -> None:
        self.what = what
        self.measure = measure
        self.stream = stream or sys.stderr
        self.t0 = 0.0
        self.t1: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def elapsed(self) -> float:
        return (self.t1 or time.monotonic()) - self.t0

    def __enter__(self) -> Bar:
        self.t0 = time.monotonic()
        try:
            terminal = self.stream.isatty()
        except (AttributeError, ValueError):
            terminal = False
        if terminal:
            self._thread = threading.Thread(target=self._draw, name="pycrs-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.t1 = time.monotonic()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _draw(self) -> None:
        if self._stop.wait(delay()):
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.fields[done]:>10} {task.fields[rate]:>12}"),
                            TimeElapsedColumn(), console=Console(file=self.stream),
                            transient=True, auto_refresh=False)
        seen = 0
        with progress:
            task = progress.add_task(self.what, total=None, done="", rate="")
            while True:
                try:
                    seen = max(seen, self.measure())  # a snapshot renamed into place: no dip
                except OSError:
                    pass
                progress.update(task, completed=seen)
                speed = progress.tasks[0].speed
                progress.update(task, done=human_bytes(seen),
                                rate=human_bytes(speed) + "/s" if speed else "")
                progress.refresh()
                if self._stop.wait(POLL):
                    break


def delay() -> float:
    """DELAY, or the seconds in PYCRS_PROGRESS_DELAY (0 draws the bar at once: the tests)."""
    try:
        return max(0.0, float(os.environ.get("PYCRS_PROGRESS_DELAY", DELAY)))
    except ValueError:
        return DELAY
