"""The pycrs runtime inside a process: where a checkpoint starts.

A request reaches the process on its control endpoint (``crs.endpoint``) or from the application
itself (``crs.checkpoint()``). The component that needs the process at a safe point (``self``)
runs when the application next calls ``safe_point()``; the fast path of a safe point with nothing
pending is a single global test. ``disable_checkpoint()`` / ``enable_checkpoint()`` delimit a
critical section in which requests wait. ``take_checkpoint`` is the one path from a request to a
committed snapshot: ft_event(CHECKPOINT), the component's checkpoint hook, commit, then
CONTINUE, TERM or a stop.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import endpoint
from .hookspecs import CheckpointOptions, Target
from .params import Params
from .snapshot import local_snapshot_name
from .states import State

RESTART_ENV = "PYCRS_RESTART_SNAPSHOT"

# Read by safe_point() on every call: keep them plain module globals.
_pending = False
_count = 0

_lock = threading.RLock()
_disabled = 0
_request: Request | None = None
_params: Params | None = None
_active = False
_start_cwd = os.getcwd()
_restart_from: Path | None = None
_restart_hooks: list[Callable[[Path], None]] = []
_coordinator: SafePointCoordinator | None = None


class SafePointCoordinator(Protocol):
    """What a job-level coordinator offers the runtime (implemented by SnapC in each rank)."""

    def at_safe_point(self, count: int) -> bool:
        """Called on the slow path of a safe point; True keeps the slow path on."""

    def busy(self) -> bool:
        """Whether a coordinated checkpoint is in progress."""


class CheckpointError(Exception):
    """A checkpoint could not be taken; the process goes on and earlier snapshots are intact."""


@dataclass
class Request:
    """One checkpoint request, from a tool or from the application."""

    final: Path
    only: str | None = None
    options: CheckpointOptions = field(default_factory=CheckpointOptions)
    reply: Callable[[dict[str, Any]], None] | None = None
    started: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None


def params() -> Params:
    """The parameters this process resolves (from its environment and files)."""
    global _params
    if _params is None:
        _params = Params()
    return _params


def is_active() -> bool:
    """Whether this process serves checkpoint requests on a control endpoint."""
    return _active


def restart_snapshot() -> Path | None:
    """The local snapshot this process was restarted from, if it is a restart."""
    return _restart_from


def start_cwd() -> str:
    """The working directory at interpreter start-up (a relaunch starts there again)."""
    return _start_cwd


def default_snapshot_path() -> Path:
    return params().get_path("crs_base_snapshot_dir").absolute() / local_snapshot_name(os.getpid())


# -- safe points and critical sections ---------------------------------------------------------
def safe_point() -> None:
    """Mark a point where the application's state is consistent; pending requests run here."""
    global _count
    _count += 1
    if _pending:
        _run_pending()


def safe_points_passed() -> int:
    """How many safe points this process has passed (coordinators agree on a common one)."""
    return _count


def request_safe_point_call() -> None:
    """Make the next safe point take the slow path (a coordinator has something for it).
    Callers read ``safe_points_passed()`` after this: no safe point after that read is missed."""
    global _pending
    _pending = True


def set_coordinator(coordinator: SafePointCoordinator | None) -> None:
    """Install the job-level coordinator consulted at safe points (SnapC's app coordinator)."""
    global _coordinator
    _coordinator = coordinator


def set_restart_snapshot(path: Path) -> None:
    """Mark this process as restarted from ``path`` (used by a coordinator that knows its rank)."""
    global _restart_from, _pending
    _restart_from = path
    _pending = True


def _run_pending() -> None:
    global _pending
    if _restart_from is not None and _restart_hooks:
        _deliver_restart()
    if _coordinator is not None and _coordinator.at_safe_point(_count):
        return  # a coordinated checkpoint is under way: stay on the slow path
    with _lock:
        req = _request
        if req is None or req.started or _disabled:
            if req is None:
                _pending = _coordinator is not None and _coordinator.busy()
            return
        req.started = True
        _pending = False
    try:
        take_checkpoint(req)
    except CheckpointError as exc:
        # The requester has been told; the application goes on from its last good state.
        print(f"pycrs: checkpoint of process {os.getpid()} failed: {exc}", file=sys.stderr)


def disable_checkpoint() -> None:
    """Enter a critical section: checkpoint requests wait until the matching enable."""
    global _disabled
    with _lock:
        _disabled += 1
        first = _disabled == 1
    if first and _components_loaded():
        from .framework import manager

        manager().hook.crs_disable_checkpoint()


def in_critical_section() -> bool:
    """Whether the process is between disable_checkpoint() and the matching enable."""
    return _disabled > 0


def enable_checkpoint() -> None:
    """Leave a critical section entered with disable_checkpoint()."""
    global _disabled
    with _lock:
        if _disabled == 0:
            raise RuntimeError("enable_checkpoint() without a matching disable_checkpoint()")
        _disabled -= 1
        last = _disabled == 0
    if last and _components_loaded():
        from .framework import manager

        manager().hook.crs_enable_checkpoint()


def _components_loaded() -> bool:
    return "crs.framework" in sys.modules


# -- restart ----------------------------------------------------------------------------------
def on_restart_delivery(hook: Callable[[Path], None]) -> None:
    """Register what hands a restarted process its state at the first safe point (used by self)."""
    global _pending
    _restart_hooks.append(hook)
    if _restart_from is not None:
        _pending = True


def _deliver_restart() -> None:
    while _restart_hooks:
        _restart_hooks.pop(0)(_restart_from)  # type: ignore[arg-type]


# -- taking a checkpoint ----------------------------------------------------------------------
def save_local(final: Path, only: str | None = None,
               options: CheckpointOptions = CheckpointOptions(),
               on_started: Callable[[str], None] | None = None,
               create_parent: bool = True) -> tuple[Path, str]:
    """Save this process into the local snapshot ``final`` with the selected component and
    commit it; return (path, component). Raises CheckpointError; the process can go on."""
    from .framework import broadcast_ft_event, select
    from .snapshot import SnapshotWriter, standard_meta

    target = Target(os.getpid(), in_process=True)
    try:
        component = select(target, params(), only)
        if on_started:
            on_started(component.name)
        with SnapshotWriter(final, fsync=params().get_bool("crs_base_fsync"),
                            create_parent=create_parent) as writer:
            standard_meta(writer.meta, component.name, target.pid, writer.final)
            _relaunch_meta(writer)
            broadcast_ft_event(State.CHECKPOINT)
            state = component.call("crs_checkpoint", target=target, snapshot=writer,
                                   options=options)
            if state not in (State.CONTINUE, State.TERM):
                raise CheckpointError(f"component {component.name} reported {state}")
            return writer.commit(), component.name
    except CheckpointError:
        _broadcast_quietly(State.ERROR)
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is reported, the process goes on
        _broadcast_quietly(State.ERROR)
        raise CheckpointError(_describe(exc)) from exc


def after_checkpoint(options: CheckpointOptions) -> None:
    """What follows a committed snapshot in this process: end, stop, or go on."""
    from .framework import broadcast_ft_event

    if options.term:
        _broadcast_quietly(State.TERM)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    if options.stop:
        os.kill(os.getpid(), signal.SIGSTOP)
    broadcast_ft_event(State.CONTINUE)


def take_checkpoint(req: Request) -> Path:
    """Serve one request of this process: save, answer the requester, then go on as asked."""
    global _request

    def answer(message: dict[str, Any]) -> None:
        req.result = message
        if req.reply:
            try:
                req.reply(message)
            except OSError:
                pass  # the tool went away; the snapshot stands on its own

    def started(component: str) -> None:
        answer({"event": "started", "component": component})

    try:
        path, component = save_local(req.final, req.only, req.options, started)
    except CheckpointError as exc:
        with _lock:
            _request = None
        answer({"event": "error", "message": str(exc)})
        req.done.set()
        raise
    with _lock:
        _request = None
    answer({"event": "done", "snapshot": str(path), "component": component})
    req.done.set()
    after_checkpoint(req.options)
    return path


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__


def _broadcast_quietly(state: State) -> None:
    from .framework import broadcast_ft_event

    try:
        broadcast_ft_event(state)
    except Exception as exc:  # noqa: BLE001
        print(f"pycrs: ft_event({state.value}) failed: {_describe(exc)}", file=sys.stderr)


def _relaunch_meta(writer: Any) -> None:
    writer.meta.add("Executable", sys.executable)
    writer.meta.add("Command", list(sys.orig_argv))
    writer.meta.add("CWD", _start_cwd)
    writer.meta.add("MCA Params", {k: v for k, v in os.environ.items()
                                   if k.startswith("OMPI_MCA_")})


def checkpoint(path: str | os.PathLike[str] | None = None, *, component: str | None = None,
               term: bool = False) -> Path:
    """Checkpoint this process now (the caller is at a safe point); return the snapshot path."""
    global _request
    req = Request(Path(path).absolute() if path else default_snapshot_path(), component,
                  CheckpointOptions(term=term))
    with _lock:
        if _request is not None and _request.started:
            raise CheckpointError("a checkpoint of this process is already in progress")
        waiting, _request = _request, req
        req.started = True
    try:
        return take_checkpoint(req)
    finally:
        with _lock:
            if waiting is not None and not waiting.started:
                _request = waiting  # a tool's request still waits for the next safe point


def _cannot_serve(only: str | None) -> str | None:
    """Why no component can save this process from inside, in one line; None if one can. A
    program younger than crs_base_startup_timeout may still be registering its callbacks: it is
    given until that age before it is refused."""
    from .framework import ComponentError, select

    grace_until = started_at() + params().get_int("crs_base_startup_timeout")
    while True:
        try:
            select(Target(os.getpid(), in_process=True), params(), only)
            return None
        except ComponentError as exc:
            if time.clock_gettime(time.CLOCK_BOOTTIME) >= grace_until:
                return f"{exc}; save it from outside: opal-checkpoint --mca crs blcr {os.getpid()}"
        time.sleep(0.05)


def started_at() -> float:
    """When this process started, in seconds since boot (CLOCK_BOOTTIME, as /proc counts)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


# -- the control endpoint ---------------------------------------------------------------------
def activate() -> None:
    """Start serving checkpoint requests on this process's control endpoint (idempotent)."""
    global _active, _restart_from, _pending
    with _lock:
        if _active:
            return
        path = endpoint.process_socket(os.getpid())
        sock = endpoint.listen(path)  # may fail: then the process is not under pycrs
        _active = True
    snap = os.environ.pop(RESTART_ENV, None)
    if snap:
        _restart_from = Path(snap)
        _pending = True
    thread = threading.Thread(target=_serve, args=(sock,), name="pycrs-control", daemon=True)
    thread.start()
    pid = os.getpid()

    def remove_socket() -> None:
        if os.getpid() == pid:
            try:
                path.unlink()
            except OSError:
                pass

    import atexit

    atexit.register(remove_socket)
    os.register_at_fork(after_in_child=_forget_in_child)


def activate_if_enabled() -> None:
    """Activate when the ``ft_cr_enabled`` parameter says so (run at interpreter start-up)."""
    if params().get_bool("ft_cr_enabled"):
        activate()


def _forget_in_child() -> None:
    global _active, _request, _pending
    _active, _request, _pending = False, None, False


def _serve(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_handle, args=(conn,), name="pycrs-request", daemon=True).start()


def _handle(conn: socket.socket) -> None:
    def ping(conn: socket.socket, _message: dict[str, Any]) -> None:
        endpoint.send(conn, {"event": "done", "pid": os.getpid(),
                             "restarted_from": str(_restart_from or "")})

    endpoint.answer(conn, {"ping": ping, "checkpoint": _serve_checkpoint})


def _serve_checkpoint(conn: socket.socket, message: dict[str, Any]) -> None:
    global _request, _pending
    send_lock = threading.Lock()

    def reply(event: dict[str, Any]) -> None:
        with send_lock:
            endpoint.send(conn, event)

    req = Request(
        final=Path(message["path"]),
        only=message.get("crs") or None,
        options=CheckpointOptions(term=bool(message.get("term")), stop=bool(message.get("stop"))),
        reply=reply,
    )
    refused = _cannot_serve(req.only)
    if refused:  # known now: waiting for a safe point would not change it
        reply({"event": "error", "message": refused})
        return
    with _lock:
        if _request is not None:
            reply({"event": "error",
                   "message": f"a checkpoint of process {os.getpid()} is already in progress"})
            return
        _request = req
        _pending = True
    reply({"event": "waiting", "message": "waiting for the next safe point"})
    # Wait for the outcome; if the tool hangs up, or no safe point comes in time, before the
    # checkpoint starts, withdraw it.
    limit = params().get_int("crs_base_safe_point_timeout")
    deadline = time.monotonic() + limit if limit > 0 else None
    while not req.done.wait(0.2):
        readable, _, _ = select.select([conn], [], [], 0)
        gone = readable and not conn.recv(1, socket.MSG_PEEK)
        late = deadline is not None and time.monotonic() > deadline
        if gone or late:
            with _lock:
                if not req.started and _request is req:
                    _request = None
                    if late:
                        reply({"event": "error", "message": f"process {os.getpid()} reached no "
                               f"safe point within {limit} s (crs_base_safe_point_timeout); "
                               "it goes on"})
                    return
