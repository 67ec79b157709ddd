"""The application coordinator inside every rank of a C/R job (Open MPI's SnapC "app" role).

It is started at interpreter start-up by the pycrs hook when the rank was launched by our
``mpirun`` in C/R mode, connects to the global coordinator and serves its requests on a thread:

1. ``prepare``: say how this rank can be saved (whether the program registered a checkpoint
   callback, and which component its MPI layer serves); the coordinator picks one way for all;
2. ``begin`` at safe points: report how many safe points this rank has passed (c) and promise
   not to pass safe point c+1 before the target is known; ``target``: the coordinator picked
   T = max(c) + 1, a safe point every rank can reach without waiting for another; each rank
   runs on to its safe point T;
3. at T, on the application's thread: quiesce check, local snapshot through the selected CRS
   component, agreement over mpi4py, ``saved`` to the coordinator, then wait for ``committed``.

No message is exchanged at ordinary safe points: the cost in the application loop is the runtime's
single global test.

Transparent mode (the rank runs under the MPI layer ``snapc.crcp``, preloaded by our mpirun on MPICH
unless ``crs`` names self only, and the program registered no callback or the job asked for ``blcr``
or ``mtcp``): no safe points and no help from the application, whose thread is left where it is
(computing, or blocked in MPI inside the layer). On ``begin`` a worker thread has the layer reach a
consistent cut and tear MPI down, and reports count 0; on ``target`` it detaches from the
coordinator (the image must hold no network socket) and has a child of its own
(``snapc.rank_image``) save this process, then waits for it: with blcr the child dumps it from
outside, with mtcp the kernel preloaded here writes the image at the child's request
(``crcp.component()`` says which, as our mpirun launched the rank). When the wait returns in the
same job, it reconnects, reports ``saved``, waits for ``committed`` and has the layer bring MPI
back; when it returns in a process restored by ``opal-restart`` in a new job (its parent changed),
it rebuilds MPI in the new job and registers with its coordinator.
"""
from __future__ import annotations

import atexit
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crs import endpoint, runtime
from crs.framework import broadcast_ft_event
from crs.hookspecs import CheckpointOptions
from crs.snapshot import local_snapshot_name
from crs.states import State

from . import jobenv, quiesce
from .launcher import rank_from_env

PR_SET_PTRACER, PR_SET_PTRACER_ANY = 0x59616D61, -1


@dataclass(frozen=True)
class Target:
    seq: int
    at: int
    directory: Path
    options: CheckpointOptions
    only: str | None


def identity() -> dict[str, Any]:
    """Who this rank's process is, for its hello: its PID and host, and its PID namespace (a
    rank restored by an ordinary user runs in one of its own; the coordinator finds its PID
    outside from it)."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    return {"pid": os.getpid(), "pidns": pidns, "host": socket.gethostname()}


class AppCoordinator:
    """One rank's end of the coordination; installed into the runtime as its coordinator."""

    def __init__(self, sock: socket.socket, rank: int, size: int, address: str = "",
                 token: str = "", transparent: bool = False) -> None:
        self.sock, self.rank, self.size = sock, rank, size
        self.address, self.token, self.transparent = address, token, transparent
        self.server: threading.Thread | None = None
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

    def start_serving(self) -> None:
        self.server = threading.Thread(target=self.serve, args=(self.sock,), name="pycrs-snapc",
                                       daemon=True)
        self.server.start()

    def serve(self, sock: socket.socket | None = None) -> None:
        sock = self.sock if sock is None else sock
        try:
            for msg in endpoint.messages(sock):
                self._on_message(msg)
        except (OSError, ValueError):
            pass
        with self.cond:
            if sock is not self.sock or self.detaching:
                return  # closed on purpose for an image: not the end of the job
            self.connected = False
            self.seq = self.target = None
            self.cond.notify_all()

    detaching = False

    def _on_message(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "prepare":  # how this rank can be saved; the coordinator picks for all
            # not on this thread: a program still starting is given time to register callbacks
            threading.Thread(target=self._report_method,
                             args=(msg["seq"], msg.get("callbacks_matter", True)),
                             name="pycrs-method", daemon=True).start()
            return
        if op == "begin" and msg.get("method") != "self":
            with self.cond:
                self.seq, self.target = msg["seq"], None
                self.outcomes = {k: v for k, v in self.outcomes.items() if k >= self.seq - 1}
            # not on this thread: it must go on reading (target, abort) while the layer works
            threading.Thread(target=self._transparent_checkpoint, args=(msg["seq"],),
                             name="pycrs-crcp", daemon=True).start()
            return
        with self.cond:
            if op == "begin":
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
        if op == "begin":
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
        with suppress(OSError):  # the coordinator's wait for safe points ends here
            self.send({"op": "reached", "seq": target.seq})
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

    # -- transparent mode (the MPI layer; no safe points) ----------------------------------------
    def _wait(self, ready: Any) -> None:
        with self.cond:
            while not ready():
                self.cond.wait()

    def _report_method(self, seq: int, callbacks_matter: bool) -> None:
        """Tell the coordinator how this rank can be saved. A program that has registered no
        callback yet and has not passed a safe point may still be importing its main module (a
        slow launcher, a loaded machine): it is asked again until it registers one, passes a
        safe point, or is older than crs_base_startup_timeout, so that a request made as the job
        starts neither refuses a half-started program nor saves whole one that will have
        callbacks (the choice must not depend on how fast the machine is). When only image
        components are allowed (``callbacks_matter`` false) the answer is the same either way,
        and is given at once."""
        grace_until = runtime.started_at() + runtime.params().get_int("crs_base_startup_timeout")
        while (callbacks_matter and not has_checkpoint_callback()
               and runtime.safe_points_passed() == 0
               and time.clock_gettime(time.CLOCK_BOOTTIME) < grace_until and self.connected):
            time.sleep(0.05)
        self.send({"op": "method", "seq": seq, "rank": self.rank,
                   "callbacks": has_checkpoint_callback(), "image": self.image_component()})

    def image_component(self) -> str | None:
        """The component that saves this rank whole (its MPI layer's), None without the layer."""
        if not self.transparent:
            return None
        from . import crcp

        return crcp.component()

    def _transparent_checkpoint(self, seq: int) -> None:
        """One checkpoint on the worker thread; see the module docstring."""
        from . import crcp

        ok, message = True, ""
        component = crcp.component()
        # A rank asked for as the job starts may not have initialized MPI yet: its MPI_Init is
        # awaited as its registration was (snapc_base_registration_timeout).
        deadline = time.monotonic() + runtime.params().get_int("snapc_base_registration_timeout")
        while not crcp.active() and time.monotonic() < deadline and self.seq == seq:
            time.sleep(0.02)
        try:
            crcp.quiesce(float(runtime.params().get_int("snapc_crcp_quiesce_timeout")))
        except crcp.LayerError as exc:
            ok, message = False, f"rank {self.rank}: {exc}"
        torn_down = ok  # MPI is down until resumed (a refused quiesce left it up)
        try:
            self.send({"op": "count", "seq": seq, "count": 0, "cut": ok})
        except OSError:
            pass
        self._wait(lambda: self.seq != seq or self.target is not None or not self.connected)
        with self.cond:
            target = self.target if self.seq == seq else None
        if target is None:  # aborted, or the coordinator went away
            if torn_down:
                self._resume_or_die(False)
            return
        restored = False
        if ok:
            ok, message, restored = self._save_image(target)
        if restored:
            self._after_restore()
            return
        if not self.connected:  # the job is ending; the layer must still give MPI back
            if torn_down:
                self._resume_or_die(False)
            return
        try:
            self.send({"op": "saved", "seq": seq, "ok": ok, "message": message,
                       "component": component})
        except OSError:
            pass
        self._wait(lambda: seq in self.outcomes or not self.connected)
        with self.cond:
            outcome = self.outcomes.pop(seq, {"ok": False})
            if self.seq == seq:
                self.seq = self.target = None
        if torn_down and outcome.get("ok") and target.options.term:
            _exit_torn_down()
        if torn_down:  # also when the image failed: the job goes on
            self._resume_or_die(False)
        if not outcome.get("ok"):
            return
        if target.options.stop:
            os.kill(os.getpid(), signal.SIGSTOP)

    def _resume_or_die(self, restarted: bool) -> None:
        from . import crcp

        try:
            crcp.resume(restarted)
        except crcp.LayerError as exc:
            # MPI cannot come back: the application cannot go on, and must not hang in MPI
            print(f"pycrs: rank {self.rank} (PID {os.getpid()}): MPI could not be rebuilt: {exc}",
                  file=sys.stderr, flush=True)
            os._exit(1)

    def _detach(self, seq: int) -> None:
        """Leave the coordinator on purpose: no network socket may be in the image."""
        with self.cond:
            self.detaching = True
        try:
            self.send({"op": "detach", "seq": seq})
            self.sock.shutdown(socket.SHUT_WR)  # the coordinator reads it, then closes its end
        except OSError:
            pass
        server = self.server
        if server is not None:
            server.join(10)
            if server.is_alive():  # the coordinator did not close: stop reading ourselves
                try:
                    self.sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
                server.join()
        self.sock.close()

    def _save_image(self, target: Target) -> tuple[bool, str, bool]:
        """Detach, have a child save this process (blcr from outside, or mtcp's kernel here at
        its request), wait for it: (ok, message, restored), ``restored`` when the wait returned
        in a process restored in a new job."""
        from . import crcp

        final = target.directory / local_snapshot_name(self.rank)
        error = endpoint.control_dir() / f"rank-image-{os.getpid()}.err"
        request = {"component": crcp.component(), "pid": os.getpid(), "rank": self.rank,
                   "final": str(final),
                   "error": str(error), "executable": sys.executable,
                   "command": list(sys.orig_argv), "cwd": runtime.start_cwd(),
                   "mca": {k: v for k, v in os.environ.items() if k.startswith("OMPI_MCA_")},
                   "omit_fds": crcp.launcher_fds()}
        with suppress(OSError):
            error.unlink()
        parent = parent_identity()
        self._detach(target.seq)
        libc = ctypes.CDLL(None, use_errno=True)
        if request["component"] == "blcr":  # the child traces this process (mtcp needs not)
            libc.prctl(PR_SET_PTRACER, ctypes.c_ulong(PR_SET_PTRACER_ANY & 0xFFFFFFFFFFFFFFFF),
                       0, 0, 0)
        try:
            child = subprocess.Popen([sys.executable, "-m", "snapc.rank_image",
                                      json.dumps(request)], env=image_child_environment(),
                                     stdin=subprocess.DEVNULL, close_fds=True)
            code = child.wait()  # 0 also when restored: that process has no such child
        except OSError as exc:
            code, error_text = -1, f"cannot start the image writer: {exc}"
        else:
            error_text = ""
        finally:
            libc.prctl(PR_SET_PTRACER, 0, 0, 0, 0)
        if parent_identity() != parent:  # a new parent: opal-restart, in a new job
            return True, "", True
        if code != 0 and not error_text:
            try:
                error_text = error.read_text().strip()
            except OSError:
                error_text = f"the image writer failed (status {code})"
        with suppress(OSError):
            error.unlink()
        self._reconnect(resume=True)
        if error_text:
            return False, f"rank {self.rank}: {error_text}", False
        return True, "", False

    def _connect(self) -> socket.socket:
        host, _, port = self.address.rpartition(":")
        return socket.create_connection((host, int(port)))

    def _reconnect(self, resume: bool) -> None:
        """A new connection to the coordinator (the same one, or the restarted job's), served
        on a new thread."""
        try:
            sock = self._connect()
            endpoint.send(sock, {"op": "hello", "token": self.token, "rank": self.rank,
                                 "size": self.size, **identity(), "resume": resume})
        except OSError as exc:
            print(f"pycrs: rank {self.rank} cannot reach the job's coordinator at "
                  f"{self.address} again: {exc}", file=sys.stderr, flush=True)
            with self.cond:
                self.detaching = False
                self.connected = False
                self.cond.notify_all()
            return
        with self.send_lock, self.cond:
            self.sock, self.detaching, self.connected = sock, False, True
        self.start_serving()

    def _after_restore(self) -> None:
        """This process was restored by opal-restart in a new job: MPI in that job, and its
        coordinator, found in the environment of the parent."""
        try:
            env = parent_environment()
        except OSError as exc:
            print(f"pycrs: rank {self.rank} restored but cannot read its launcher's "
                  f"environment: {exc}", file=sys.stderr, flush=True)
            os._exit(1)
        with self.cond:
            self.seq = self.target = None
            self.outcomes = {}
            self.address = env.get(jobenv.ENV_ADDRESS, "")
            self.token = env.get(jobenv.ENV_TOKEN, "")
        if env.get(jobenv.ENV_JOBID):
            os.environ[jobenv.ENV_JOBID] = env[jobenv.ENV_JOBID]
        self._resume_or_die(True)
        if self.address:
            self._reconnect(resume=False)
        else:
            with self.cond:
                self.detaching, self.connected = False, False


def has_checkpoint_callback() -> bool:
    """Whether the program registered a checkpoint callback (the self component's), as
    ``crs.on_checkpoint`` or by name in ``__main__``."""
    from crs.plugins.self import callbacks

    return callbacks.current().checkpoint is not None


def _exit_torn_down() -> None:
    """End the rank after a checkpoint with --term while MPI is still torn down: the layer's
    teardown finalized the MPI session (and with it the launcher's PMI session), so the launcher
    takes the exit for a normal one. Not MPI_Finalize after a rebuild: the application thread
    may be inside a blocking MPI call, which would then run on in a finalized library."""
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).exit(0)
    os._exit(0)  # not reached


def parent_identity() -> tuple[int, str]:
    """The parent process: its PID and start time (a PID alone may be reused)."""
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = ""
    return ppid, start


def parent_environment() -> dict[str, str]:
    """The environment the parent process was started with (after a restore: opal-restart's,
    which the new launcher gave it)."""
    with open(f"/proc/{os.getppid()}/environ", "rb") as f:
        entries = f.read().split(b"\0")
    out = {}
    for entry in entries:
        key, sep, value = entry.partition(b"=")
        if sep:
            out[key.decode(errors="surrogateescape")] = value.decode(errors="surrogateescape")
    return out


def image_child_environment() -> dict[str, str]:
    """The environment of the child that saves this rank: no MPI layer nor mtcp kernel, no pycrs
    start-up hook (it is a tool, not a process of the job)."""
    from crs.launch import BOOT_DIR

    env = dict(os.environ)
    preload = jobenv.preload_without_layers(env)
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(BOOT_DIR)]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    env.pop(jobenv.ENV_LAYER, None)
    return env


def transparent_mode() -> bool:
    """Whether this rank runs under the MPI layer, preloaded by our mpirun."""
    if not os.environ.get(jobenv.ENV_LAYER):
        return False
    from . import crcp

    return crcp.loaded()


_coordinator: AppCoordinator | None = None


def activate_if_in_job() -> AppCoordinator | None:
    """Connect to the global coordinator when this process is a rank of a C/R job."""
    global _coordinator
    # Taken out of the environment: processes this rank starts are not ranks of the job.
    address = os.environ.pop(jobenv.ENV_ADDRESS, None)
    token = os.environ.pop(jobenv.ENV_TOKEN, "")
    restart_dir = os.environ.pop(jobenv.ENV_RESTART_SEQ_DIR, None)
    if not address or _coordinator is not None:
        return _coordinator
    ranks = rank_from_env(os.environ)
    if ranks is None:
        print("pycrs: launched under a C/R mpirun but no MPI rank in the environment; "
              "this process cannot take part in checkpoints", file=sys.stderr)
        return None
    rank, size = ranks
    transparent = transparent_mode()
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)))
    coordinator = AppCoordinator(sock, rank, size, address, token, transparent)
    coordinator.send({"op": "hello", "token": token, "rank": rank, "size": size, **identity()})
    if restart_dir:  # restarted at safe points: the rank's state comes from its snapshot
        runtime.set_restart_snapshot(Path(restart_dir) / local_snapshot_name(rank))
    runtime.set_coordinator(coordinator)  # for checkpoints at safe points, under the layer too
    coordinator.start_serving()
    atexit.register(coordinator.goodbye)
    _coordinator = coordinator
    return coordinator
