"""Processes that pycrs is still starting: a request for one of them waits, for a bounded time,
until it serves the endpoint it will serve, instead of denying that it runs under pycrs.

``mpirun -am ft-enable-cr ... & ompi-checkpoint $!`` reaches our mpirun before it listens, and
``pycrs run --mca crs mtcp PROGRAM & opal-checkpoint --mca crs mtcp $!`` reaches the program
before its kernel does. What is known of such a process without its help: which program it runs
(our console scripts, before they exec or listen) and the environment it was started with.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def environment(pid: int) -> dict[str, str]:
    """The environment process ``pid`` was started with (empty if it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def runs_tool(pid: int, module: str) -> bool:
    """Whether ``pid`` runs one of our console scripts (a Python script importing ``module``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if len(argv) < 2:
            return False
        with open(argv[1], "rb") as f:
            return f"from {module} import".encode() in f.read(4096)
    except OSError:
        return False


def wait_for(path: Path, pid: int, starting: Callable[[], bool], timeout: float) -> bool:
    """Wait until ``path`` exists, while process ``pid`` lives and ``starting()`` says it is
    still on its way to serving it, at most ``timeout`` seconds; True once it exists."""
    deadline = time.monotonic() + timeout
    gone_for = 0  # polls in a row that found it not starting: one may fall inside its exec,
    while not path.exists():  # when /proc shows neither its old command line nor its new one
        if not os.path.exists(f"/proc/{pid}") or time.monotonic() > deadline:
            return path.exists()
        gone_for = 0 if starting() else gone_for + 1
        if gone_for >= 5:
            return path.exists()
        time.sleep(0.02)
    return True


def about_to_exec(pid: int, within: float = 1.0) -> bool:
    """Whether ``pid`` was forked less than ``within`` seconds ago and still runs its parent's
    command line: between fork and exec (``pycrs run ... & opal-checkpoint $!`` may look then),
    nothing tells what it will run, so it is waited for, that long at most."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        ppid, started = int(fields[1]), int(fields[19]) / os.sysconf("SC_CLK_TCK")
        same = (Path(f"/proc/{pid}/cmdline").read_bytes()
                == Path(f"/proc/{ppid}/cmdline").read_bytes())
    except (OSError, ValueError, IndexError):
        return False
    return same and time.clock_gettime(time.CLOCK_BOOTTIME) - started < within


def cr_enabled_in(pid: int) -> bool:
    """Whether ``pid`` was started with checkpoint/restart enabled (``pycrs run`` sets it), or is
    still ``pycrs run`` itself (or about to exec it), on its way to the program."""
    return (environment(pid).get("OMPI_MCA_ft_cr_enabled") == "1"
            or runs_tool(pid, "crs.cli.pycrs") or about_to_exec(pid))


def preloads(pid: int, library: Path) -> bool:
    """Whether ``pid`` was started with ``library`` in its LD_PRELOAD, or is still ``pycrs run``
    (which puts it there for --mca crs mtcp), or about to exec it."""
    preload = environment(pid).get("LD_PRELOAD", "")
    return (str(library) in preload.replace(" ", ":").split(":")
            or runs_tool(pid, "crs.cli.pycrs") or about_to_exec(pid))
