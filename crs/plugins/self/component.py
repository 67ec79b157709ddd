"""The ``self`` CRS component: the application saves and restores its own state.

Priority 20 when the application provides a checkpoint callback (as in Open MPI). It runs inside
the process, at a safe point. A restart relaunches the original command, which gets its state
back through the restart callback or ``crs.restored()``.
"""
from __future__ import annotations

import os
import subprocess

from crs.hookspecs import CheckpointOptions, Offer, Relaunch, Target, hookimpl
from crs.params import Params
from crs.runtime import RESTART_ENV
from crs.snapshot import LocalSnapshot, SnapshotWriter
from crs.states import State

from . import callbacks, statefile

PRIORITY = 20


class SelfComponent:
    name = "self"
    default_priority = PRIORITY
    needs_safe_point = True

    def __init__(self) -> None:
        self._saved = False

    @hookimpl
    def crs_query(self, target: Target, params: Params) -> Offer:
        if not target.in_process:
            return Offer(self.name, None, "runs only inside the process it saves (no callbacks "
                         "can be called from outside)")
        if callbacks.current().checkpoint is None:
            return Offer(self.name, None, "the application registered no checkpoint callback")
        return Offer(self.name, PRIORITY)

    @hookimpl
    def crs_checkpoint(self, target: Target, snapshot: SnapshotWriter,
                       options: CheckpointOptions) -> State:
        fn = callbacks.current().checkpoint
        if fn is None:
            raise RuntimeError("the application registered no checkpoint callback")
        statefile.save(snapshot, fn())
        self._saved = True
        return State.TERM if options.term else State.CONTINUE

    @hookimpl
    def crs_ft_event(self, state: State) -> None:
        if state is State.CONTINUE and self._saved:
            self._saved = False
            fn = callbacks.current().continue_
            if fn is not None:
                fn()
        elif state in (State.ERROR, State.TERM):
            self._saved = False

    @hookimpl
    def crs_restart(self, snapshot: LocalSnapshot, relaunch: Relaunch,
                    spawn: bool) -> subprocess.Popen[bytes] | None:
        env = dict(relaunch.env)
        env[RESTART_ENV] = str(snapshot.path)
        if spawn:
            return subprocess.Popen(relaunch.argv, executable=relaunch.executable,
                                    cwd=relaunch.cwd, env=env)
        os.chdir(relaunch.cwd)
        os.execve(relaunch.executable, relaunch.argv, env)
        return None  # not reached


component = SelfComponent()
