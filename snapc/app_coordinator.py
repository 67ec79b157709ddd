"""The application coordinator inside every rank of a C/R job (Open MPI's SnapC "app" role).

It is started at interpreter start-up by the pycrs hook when the rank was launched by our
``mpirun`` in C/R mode, connects to the global coordinator and serves its requests on a thread:

1. ``prepare``: report how many safe points this rank has passed (c) and promise not to pass
   safe point c+1 before the target is known;
2. ``target``: the coordinator picked T = max(c) + 1, a safe point every rank can reach without
   waiting for another; each rank runs on to its safe point T;
3. at T, on the application's thread: quiesce check, local snapshot through the selected CRS
   component, agreement over mpi4py, ``saved`` to the coordinator, then wait for ``committed``.

No message is exchanged at ordinary safe points: the cost in the application loop is the runtime's
single global test.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crs import endpoint, runtime
from crs.framework import broadcast_ft_event
from crs.hookspecs import CheckpointOptions
from crs.snapshot import local_snapshot_name
from crs.states import State

from . import quiesce
from .launcher import rank_from_env

ENV_ADDRESS = "PYCRS_COORDINATOR"
ENV_TOKEN = "PYCRS_COORDINATOR_TOKEN"
ENV_RESTART_SEQ_DIR = "PYCRS_RESTART_SEQ_DIR"


@dataclass(frozen=True)
class Target:
    seq: int
    at: int
    directory: Path
    options: CheckpointOptions
    only: str | None


class AppCoordinator:
    """One rank's end of the coordination; installed into the runtime as its coordinator."""

    def __init__(self, sock: socket.socket, rank: int, size: int) -> None:
        self.sock, self.rank, self.size = sock, rank, size
        self.cond = threading.Condition()
        self.send_lock = threading.Lock()
        self.seq: int | None = None
        self.hold_at = 0
        self.target: Target | None = None
        # Outcomes by sequence: the next request's prepare may arrive before this rank's
        # application thread has read the outcome of the previous one.
        self.outcomes: dict[int, dict[str, Any]] = {}
        self.connected = True

    # -- control thread -------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        with self.send_lock:
            endpoint.send(self.sock, message)

    def serve(self) -> None:
        try:
            for msg in endpoint.messages(self.sock):
                self._on_message(msg)
        except (OSError, ValueError):
            pass
        with self.cond:
            self.connected = False
            self.seq = self.target = None
            self.cond.notify_all()

    def _on_message(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        with self.cond:
            if op == "prepare":
                self.seq, self.target = msg["seq"], None
                self.outcomes = {k: v for k, v in self.outcomes.items() if k >= self.seq - 1}
                runtime.request_safe_point_call()
                count = runtime.safe_points_passed()  # read after the request: none is missed
                self.hold_at = count + 1
            elif op == "target" and msg["seq"] == self.seq:
                self.target = Target(
                    msg["seq"], msg["at"], Path(msg["dir"]),
                    CheckpointOptions(term=msg.get("term", False), stop=msg.get("stop", False)),
                    msg.get("crs") or None)
            elif op == "abort" and msg["seq"] == self.seq:
                self.seq = self.target = None
            elif op == "committed":
                self.outcomes[msg["seq"]] = msg
            self.cond.notify_all()
        if op == "prepare":
            self.send({"op": "count", "seq": msg["seq"], "count": count})

    def goodbye(self) -> None:
        """At a normal exit: tell the coordinator this rank finished (it did not die)."""
        try:
            self.send({"op": "bye"})
        except OSError:
            pass

    # -- application thread (safe points) -------------------------------------------------------
    def busy(self) -> bool:
        return self.seq is not None

    def at_safe_point(self, count: int) -> bool:
        with self.cond:
            while self.seq is not None and self.target is None and count >= self.hold_at:
                self.cond.wait()
            target = self.target
            if self.seq is None:
                return False
            if target is None or count < target.at:
                return True
        self._checkpoint(target, count)
        return False

    def _checkpoint(self, target: Target, count: int) -> None:
        comm = quiesce.private_comm()
        ok, message, component = True, "", ""
        try:
            if count != target.at:
                raise runtime.CheckpointError(f"passed the agreed safe point {target.at} "
                                              f"(at {count})")
            if runtime.in_critical_section():
                # The ranks cannot all wait for it: this checkpoint fails, a later one may not.
                raise runtime.CheckpointError(f"inside a critical section at the agreed safe "
                                              f"point {target.at}")
            if comm is not None:
                quiesce.ensure_quiet(comm)
            final = target.directory / local_snapshot_name(self.rank)
            _, component = runtime.save_local(final, target.only, target.options,
                                              create_parent=False)
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator, the job goes on
            ok, message = False, f"rank {self.rank}: {exc}"
        if comm is not None:
            quiesce.agree(comm, ok)
        try:
            self.send({"op": "saved", "seq": target.seq, "ok": ok, "message": message,
                       "component": component})
        except OSError:
            pass
        with self.cond:
            while target.seq not in self.outcomes and self.connected:
                self.cond.wait()
            outcome = self.outcomes.pop(target.seq, {"ok": False})
            if self.seq == target.seq:  # not yet the next request's
                self.seq = self.target = None
        if not outcome.get("ok"):
            if ok:  # this rank's part was fine: the application simply goes on
                broadcast_ft_event(State.CONTINUE)
            return
        if target.options.term:
            broadcast_ft_event(State.TERM)
            quiesce.finalize_and_exit(comm)
        if target.options.stop:
            os.kill(os.getpid(), signal.SIGSTOP)
        broadcast_ft_event(State.CONTINUE)


_coordinator: AppCoordinator | None = None


def activate_if_in_job() -> AppCoordinator | None:
    """Connect to the global coordinator when this process is a rank of a C/R job."""
    global _coordinator
    # Taken out of the environment: processes this rank starts are not ranks of the job.
    address = os.environ.pop(ENV_ADDRESS, None)
    token = os.environ.pop(ENV_TOKEN, "")
    restart_dir = os.environ.pop(ENV_RESTART_SEQ_DIR, None)
    if not address or _coordinator is not None:
        return _coordinator
    ranks = rank_from_env(os.environ)
    if ranks is None:
        print("pycrs: launched under a C/R mpirun but no MPI rank in the environment; "
              "this process cannot take part in checkpoints", file=sys.stderr)
        return None
    rank, size = ranks
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)))
    coordinator = AppCoordinator(sock, rank, size)
    coordinator.send({"op": "hello", "token": token, "rank": rank,
                      "size": size, "pid": os.getpid(), "host": socket.gethostname()})
    if restart_dir:
        runtime.set_restart_snapshot(Path(restart_dir) / local_snapshot_name(rank))
    runtime.set_coordinator(coordinator)
    threading.Thread(target=coordinator.serve, name="pycrs-snapc", daemon=True).start()
    atexit.register(coordinator.goodbye)
    _coordinator = coordinator
    return coordinator
