"""Processes and jobs in tests: started, read, waited for and ended, always with a deadline.

Every timeout here is a safety net: a test waits for an event (a line, a file, a socket, a
state), and the deadline only turns a hang into a failure that says what was awaited.

/proc
    ``proc_stat(pid)`` (state letter, parent), ``proc_state(pid)``, ``alive(pid)``,
    ``gone(pid)``, ``children(pid)``, ``descendants(pid)``, ``session_pids(sid)``
waiting
    ``eventually(cond, timeout) -> bool``, ``wait_until(cond, what, timeout)`` (fails the test),
    ``wait_for_path(path, proc, what, timeout)`` (a file or socket that ``proc`` makes; fails
    if ``proc`` ends first), ``wait_for_endpoint(proc)`` (a process under pycrs),
    ``wait_for_job_endpoint(proc)`` (our mpirun in C/R mode)
reading a child's pipes
    ``Stream``: one pipe read from its descriptor with select() (a buffered stream would hide
    what its buffer holds): ``wait_for(pattern, timeout, what)``, or line by line ``next()``,
    ``until(text)``, ``rest()``
ending
    ``Child``: a process with both pipes as Streams, ``finish(timeout)``, ``kill_and_reap()``,
    ``close()``; ``Session``: every Child a test started, and restored processes (not our
    children) by PID, all killed at the end (the ``session`` fixture of conftest.py);
    ``kill_session(sid)``: SIGKILL a whole job started with start_new_session=True;
    ``kill_tree(pid)``: its session and every descendant (hydra starts the ranks in sessions of
    their own); ``reap(pids)``: wait until orphans that came to this process (a subreaper) are
    gone, so that their PIDs are free for a restore
"""
from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BIN = Path(sys.executable).parent


# -- /proc -------------------------------------------------------------------------------------
def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent PID) of a process, or None when there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def proc_state(pid: int) -> str | None:
    """The state letter of a process (R, S, T, Z...), or None when there is none."""
    st = proc_stat(pid)
    return st[0] if st else None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (exists and is not a zombie)."""
    return proc_state(pid) not in (None, "Z", "X")


def gone(pid: int) -> bool:
    return not alive(pid)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(c) for c in text.split()]


def _parents() -> dict[int, int]:
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            out[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, at any depth."""
    parents = _parents()
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        todo += kids
    return found


def session_pids(sid: int) -> list[int]:
    """Every live process in session ``sid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


# -- waiting -----------------------------------------------------------------------------------
def eventually(cond: Callable[[], bool], timeout: float) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` seconds have passed; whether it held."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``cond`` until it holds; fail the test, naming ``what``, at the deadline."""
    assert eventually(cond, timeout), f"timed out waiting for {what}"


def wait_for_path(path: Path, proc: subprocess.Popen[Any], what: str = "",
                  timeout: float = 60.0, details: Callable[[], object] | None = None) -> None:
    """Until ``path`` exists (a file or a socket ``proc`` makes). Fails if ``proc`` ends first
    (with ``details()``, its output say, in the message) or at the deadline."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            info = details() if details else f"exit status {proc.returncode}"
            raise AssertionError(f"{proc.args} ended before {what or path} appeared: {info}")
        assert time.monotonic() < deadline, f"no {what or path} within {timeout:.0f} s"
        time.sleep(0.02)


def control_dir() -> Path:
    """The control directory of this test (conftest's private_control_dir)."""
    return Path(os.environ["PYCRS_CONTROL_DIR"])


def wait_for_endpoint(proc: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    """Until a process started under pycrs serves its control endpoint."""
    wait_for_path(control_dir() / f"crs-{proc.pid}.sock", proc, "control endpoint", timeout)


def start_under_pycrs(args: list[str], cwd: Path, **kw: Any) -> subprocess.Popen[str]:
    """`pycrs run python ARGS...` in the background, once its endpoint is up."""
    proc = subprocess.Popen([str(BIN / "pycrs"), "run", sys.executable, *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    wait_for_endpoint(proc)
    return proc


def wait_for_job_endpoint(proc: subprocess.Popen[Any], ctl: Path | None = None,
                          timeout: float = 60.0,
                          details: Callable[[], object] | None = None) -> None:
    """Until our mpirun in C/R mode (``proc``) serves its job's endpoint in ``ctl`` (by default
    this test's control directory)."""
    sock = (ctl or control_dir()) / f"mpirun-{proc.pid}.sock"
    wait_for_path(sock, proc, "job endpoint", timeout, details)


# -- reading a child's pipes -------------------------------------------------------------------
class Stream:
    """One pipe of a child, read from its raw descriptor with select() and a deadline (never
    through a buffered stream, whose buffer select() cannot see). ``wait_for`` searches all
    that came so far; ``next``, ``until`` and ``rest`` take it line by line."""

    def __init__(self, pipe: IO[Any], timeout: float = 120.0, name: str = "output") -> None:
        self.fd = pipe.fileno()
        self.timeout = timeout  # for the line-by-line reads
        self.name = name  # of the child, in failure messages
        self.data = b""
        self.eof = False
        self._taken = 0  # bytes handed out by next()

    def feed(self) -> None:
        """Read what the pipe holds (call when select() says it is readable)."""
        chunk = os.read(self.fd, 1 << 16)
        self.data += chunk
        self.eof = not chunk

    def _feed_within(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.fd], [], [], left)[0]:
            return False
        self.feed()
        return True

    def wait_for(self, pattern: bytes, timeout: float, what: str) -> re.Match[bytes]:
        """The first match of ``pattern`` in a complete line, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.data[: self.data.rfind(b"\n") + 1], re.M)
            if m:
                return m
            if self.eof:
                raise AssertionError(f"{what}: output ended without {pattern!r}: {self.text!r}")
            if not self._feed_within(deadline):
                raise AssertionError(
                    f"{what}: no {pattern!r} within {timeout:.0f} s: {self.text!r}")

    def next(self) -> str | None:
        """The next line, or None at the end of the stream."""
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self.data[self._taken:] and not self.eof:
            assert self._feed_within(deadline), f"{self.name}: no output within {self.timeout} s"
        rest = self.data[self._taken:]
        if not rest:
            return None
        line, sep, _ = rest.partition(b"\n")
        self._taken += len(line) + len(sep)
        return (line + sep).decode()

    def until(self, text: str) -> list[str]:
        """Lines up to and including the first that contains ``text``."""
        lines: list[str] = []
        while not lines or text not in lines[-1]:
            line = self.next()
            assert line is not None, f"{self.name} ended before {text!r}: {lines}"
            lines.append(line)
        return lines

    def rest(self) -> list[str]:
        """The remaining lines, up to the end of the stream."""
        lines = []
        while (line := self.next()) is not None:
            lines.append(line)
        return lines

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")


class Child:
    """A process we started, with its stdout and stderr readable under deadlines."""

    def __init__(self, args: list[str], **kw: Any) -> None:
        kw.setdefault("stdin", subprocess.DEVNULL)
        self.args = args
        self.popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
        self.pid = self.popen.pid
        self.out = Stream(self.popen.stdout, name=args[0])  # type: ignore[arg-type]
        self.err = Stream(self.popen.stderr, name=args[0])  # type: ignore[arg-type]

    def finish(self, timeout: float) -> tuple[int, str, str]:
        """Wait for the end, reading both pipes at once (SIGKILL at the deadline); the exit
        status and all the output."""
        deadline = time.monotonic() + timeout
        open_ = [s for s in (self.out, self.err) if not s.eof]
        while open_ and (left := deadline - time.monotonic()) > 0:
            readable = select.select([s.fd for s in open_], [], [], left)[0]
            for s in open_:
                if s.fd in readable:
                    s.feed()
            open_ = [s for s in open_ if not s.eof]
        try:
            code = self.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.args[0]} did not end within {timeout:.0f} s; "
                                 f"stdout {self.out.text!r} stderr {self.err.text!r}") from None
        return code, self.out.text, self.err.text

    def kill_and_reap(self) -> None:
        """SIGKILL and reap it, so that its PID is free (for the restore of its snapshot)."""
        self.popen.kill()
        self.popen.wait()

    def close(self) -> None:
        if self.popen.poll() is None:
            self.kill_and_reap()
        for pipe in (self.popen.stdout, self.popen.stderr, self.popen.stdin):
            if pipe is not None:
                pipe.close()


@dataclass
class Session:
    """Everything a test started; whatever is still running at the end is killed. A restored
    process is not our child: it is killed by PID while it still runs our program (its
    command line holds ``marker``)."""

    children: list[Child] = field(default_factory=list)
    restored: list[tuple[int, str]] = field(default_factory=list)

    def start(self, args: list[str], **kw: Any) -> Child:
        child = Child(args, **kw)
        self.children.append(child)
        return child

    def cleanup(self) -> None:
        for pid, marker in self.restored:
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for child in self.children:
            child.close()


def start_program(session: Session, argv: list[str], env: dict[str, str] | None = None,
                  timeout: float = 30.0, **kw: Any) -> Child:
    """Start a program in its own session (its environment: ours plus ``env``) and wait for its
    READY line on stdout."""
    child = session.start(argv, start_new_session=True,
                          env={**os.environ, **(env or {})}, **kw)
    child.out.wait_for(rb"^READY$", timeout, f"{Path(argv[0]).name} READY")
    return child


# -- ending ------------------------------------------------------------------------------------
def kill_session(sid: int) -> None:
    """SIGKILL a whole job (launcher, ranks and all) started with start_new_session=True: what
    a node failure or a batch system's kill does to it."""
    deadline = time.monotonic() + 30
    while pids := session_pids(sid):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        assert time.monotonic() < deadline, f"processes survive: {pids}"
        time.sleep(0.05)


def kill_tree(pid: int) -> list[int]:
    """SIGKILL the session of ``pid`` and every process below it (hydra starts the ranks in
    sessions of their own, where they would run on without their launcher); the PIDs below."""
    tree = descendants(pid)
    kill_session(pid)
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, 9)
    return tree


def reap(pids: list[int], timeout: float = 60.0) -> None:
    """Until none of ``pids`` exists: orphans that came to this process (a subreaper) are reaped
    here, so that their PIDs are free again (a zombie's PID is still taken)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while os.path.exists(f"/proc/{pid}"):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            assert time.monotonic() < deadline, f"process {pid} stays"
            time.sleep(0.02)
