"""The ``blcr`` CRS component: saves a process from outside with ptrace, no cooperation needed,
and rebuilds it from the image (priority 10, as Open MPI's BLCR component).

The dump runs in the tool (``opal-checkpoint --mca crs blcr PID``); the restore makes the
restored process a child of the tool (``opal-restart``), which waits for it, passes signals on
and exits with its status.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import suppress

from crs.hookspecs import CheckpointOptions, Offer, Relaunch, Target, hookimpl
from crs.params import Params
from crs.snapshot import LocalSnapshot, SnapshotWriter
from crs.states import State

PRIORITY = 10
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGQUIT)


class BlcrComponent:
    name = "blcr"
    default_priority = PRIORITY
    needs_safe_point = False

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.truncate_files = True

    @hookimpl
    def crs_query(self, target: Target, params: Params) -> Offer:
        if target.in_process:
            return Offer(self.name, None, "saves a process from outside (use opal-checkpoint "
                         "--mca crs blcr PID)")
        if os.uname().machine != "x86_64":
            return Offer(self.name, None, f"supports x86-64 only, not {os.uname().machine}")
        return Offer(self.name, PRIORITY)

    @hookimpl
    def crs_init(self, params: Params) -> None:
        self.truncate_files = params.get_bool("crs_blcr_truncate_files")

    @hookimpl
    def crs_checkpoint(self, target: Target, snapshot: SnapshotWriter,
                       options: CheckpointOptions) -> State:
        from .dump import dump

        self.timings = dump(target.pid, snapshot, options)
        snapshot.meta.add("BLCR Frozen Seconds", f"{self.timings['frozen']:.6f}")
        return State.TERM if options.term else State.CONTINUE

    @hookimpl
    def crs_restart(self, snapshot: LocalSnapshot, relaunch: Relaunch,
                    spawn: bool) -> subprocess.Popen[bytes] | None:
        from .restore import restore

        if spawn:
            raise NotImplementedError("blcr restores a process as a child of the restarting "
                                      "tool only (opal-restart)")
        pid = 0
        early: list[int] = []

        def forward(sig: int, frame: object) -> None:
            if pid:
                os.kill(pid, sig)
            else:
                early.append(sig)

        for sig in FORWARDED:  # from here on, a signal for the tool is one for the process
            signal.signal(sig, forward)
        pid, waiter = restore(snapshot, truncate_files=self.truncate_files, stop=relaunch.stop,
                              pid_namespace=relaunch.pid_namespace)
        for sig in early:
            os.kill(pid, sig)
        if relaunch.verbose:
            print(f"opal-restart: restored process {pid}", file=sys.stderr, flush=True)
        if relaunch.detach:
            print(pid, flush=True)
            os._exit(0)
        _, status = os.waitpid(waiter, 0)
        code = os.waitstatus_to_exitcode(status)
        sys.stdout.flush()
        sys.stderr.flush()
        if code < 0:  # die the same way (SIGKILL and SIGSTOP have no handler to reset)
            with suppress(OSError, ValueError):
                signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code & 0xFF)


component = BlcrComponent()
