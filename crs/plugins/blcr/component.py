"""The ``blcr`` CRS component: saves a process from outside with ptrace, no cooperation needed,
and rebuilds it from the image (priority 10, as Open MPI's BLCR component).

The dump runs in the tool (``opal-checkpoint --mca crs blcr PID``); the restore makes the
restored process a child of the tool (``opal-restart``), which waits for it, passes signals on
and exits with its status.

The ranks of an MPI job checkpointed transparently (``mpirun -am ft-enable-cr --mca crs blcr``)
are saved the same way, by a child of each rank (``snapc.rank_image``); ``ompi-restart``
relaunches each such rank as ``opal-restart <its snapshot>`` under the new launcher, which
restores it as its child, where it joins the new job.
"""
from __future__ import annotations

import subprocess

from crs.framework import CRSError
from crs.hookspecs import CheckpointOptions, Offer, Relaunch, Target, hookimpl
from crs.params import Params
from crs.plugins.image_based import refusal, relaunch_restored_rank
from crs.snapshot import LocalSnapshot, SnapshotWriter
from crs.states import State

PRIORITY = 10


class BlcrComponent:
    name = "blcr"
    default_priority = PRIORITY
    needs_safe_point = False

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.truncate_files = True
        self.omit: set[int] = set()

    @hookimpl
    def crs_query(self, target: Target, params: Params) -> Offer:
        return refusal(self.name, target, "saves a process from outside (use opal-checkpoint "
                       "--mca crs blcr PID)") or Offer(self.name, PRIORITY)

    @hookimpl
    def crs_init(self, params: Params) -> None:
        self.truncate_files = params.get_bool("crs_blcr_truncate_files")
        text = params.get("crs_blcr_omit_fds").replace(" ", "")
        try:
            self.omit = {int(fd) for fd in text.split(",") if fd}
        except ValueError:
            raise CRSError(f"crs_blcr_omit_fds: {text!r} is not a list of descriptor "
                           "numbers") from None

    @hookimpl
    def crs_checkpoint(self, target: Target, snapshot: SnapshotWriter,
                       options: CheckpointOptions) -> State:
        from .dump import dump

        self.timings = dump(target.pid, snapshot, options, omit=self.omit)
        snapshot.meta.add("BLCR Frozen Seconds", f"{self.timings['frozen']:.6f}")
        return State.TERM if options.term else State.CONTINUE

    @hookimpl
    def crs_prelaunch(self, rank: int, snapshot: LocalSnapshot, relaunch: Relaunch) -> None:
        relaunch_restored_rank(snapshot, relaunch)

    @hookimpl
    def crs_restart(self, snapshot: LocalSnapshot, relaunch: Relaunch,
                    spawn: bool) -> subprocess.Popen[bytes] | None:
        from .restore import restart_as_child

        return restart_as_child(self.name, snapshot, relaunch, spawn, self.truncate_files)


component = BlcrComponent()
