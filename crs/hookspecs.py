"""Hook specifications of a CRS (checkpoint/restart service) component, in pluggy terms.

They mirror Open MPI's OPAL CRS module. A component is any object with ``name`` and some of these
``crs_*`` methods marked with ``hookimpl``, published in the ``pycrs.crs`` entry-point group.
Other layers (SnapC, the application coordinator) register plugins too, for ``crs_ft_event``.
"""
from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pluggy

from .states import State

if TYPE_CHECKING:
    from .params import Params
    from .snapshot import LocalSnapshot, SnapshotWriter

PROJECT = "pycrs"
ENTRY_POINT_GROUP = "pycrs.crs"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Target:
    """The process to checkpoint; ``in_process`` when the checkpoint runs inside it."""

    pid: int
    in_process: bool


@dataclass(frozen=True)
class Offer:
    """A component's answer to a query: a priority when it can serve, else the reason it cannot."""

    component: str
    priority: int | None
    reason: str = ""


@dataclass(frozen=True)
class CheckpointOptions:
    """What happens to the process after the snapshot: go on, end (term) or stop (SIGSTOP)."""

    term: bool = False
    stop: bool = False


@dataclass
class Relaunch:
    """How to start a process again from a snapshot; prelaunch hooks may adjust it."""

    executable: str
    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    verbose: bool = False  # report progress on stderr
    stop: bool = False  # leave the process stopped (SIGSTOP) once it is back
    detach: bool = False  # do not wait for it (image-based components)
    pid_namespace: bool = False  # bring it back in a fresh PID namespace (image-based components)
    job: bool = False  # relaunched as a rank of an MPI job, by ompi-restart under our mpirun
    #: told the PID once an image-based component has rebuilt the process (it runs again)
    restored: Callable[[int], None] | None = None


class CRSSpec:
    """The hooks of a CRS component."""

    @hookspec
    def crs_query(self, target: Target, params: Params) -> Offer | None:
        """Say whether this component can checkpoint ``target`` here, and how eagerly."""

    @hookspec
    def crs_init(self, params: Params) -> None:
        """Prepare to serve (called once, on the selected component only)."""

    @hookspec
    def crs_finalize(self) -> None:
        """Release what init acquired."""

    @hookspec(firstresult=True)
    def crs_checkpoint(
        self, target: Target, snapshot: SnapshotWriter, options: CheckpointOptions
    ) -> State | None:
        """Save ``target`` into ``snapshot`` (not yet committed); return CONTINUE, TERM or ERROR."""

    @hookspec(firstresult=True)
    def crs_restart(self, snapshot: LocalSnapshot, relaunch: Relaunch,
                    spawn: bool) -> subprocess.Popen[bytes] | None:
        """Bring the process back: replace the caller (spawn False) or start it as a child."""

    @hookspec
    def crs_enable_checkpoint(self) -> None:
        """The process left its last critical section: deferred requests may proceed."""

    @hookspec
    def crs_disable_checkpoint(self) -> None:
        """The process entered a critical section: requests wait until it ends."""

    @hookspec
    def crs_prelaunch(self, rank: int, snapshot: LocalSnapshot, relaunch: Relaunch) -> None:
        """Adjust how a process (an MPI rank) is relaunched from ``snapshot``, in place."""

    @hookspec
    def crs_ft_event(self, state: State) -> None:
        """A phase of a checkpoint or restart is happening in this process."""
