"""Running a job until it is done.

``snapc_base_restarts N``: when the job fails (``why_failed``: a rank died, a node was lost, the
launcher ended it with an error), our mpirun restarts it from the newest sequence of its global
snapshot that verifies (an older one when the newer do not), as ``ompi-restart`` would, but in
place: it execs the restarted job's mpirun, so the JOBID (its PID), the job's endpoint and the
process a shell or a batch system waits for stay the same. The restarts so far are counted
across those execs in the environment (``jobenv.ENV_RESTART_ATTEMPT``); each is said in one line
on stderr, with why and from which sequence, and mpirun exits with the last attempt's status.

``snapc_base_resume DIR``: DIR is the job's global snapshot directory. When it holds a finished
sequence, the job resumes from the newest that verifies instead of starting its program; else
the program starts and its checkpoints go to DIR. A batch script that is requeued runs the same
command line again, with no if/else.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crs.params import ParamError, Params
from crs.snapshot import SnapshotError

from . import jobenv
from .cli.ompi_restart import plan_restart
from .storage import META_FILE, GlobalSnapshot

if TYPE_CHECKING:
    from .coordinator import GlobalCoordinator

TOOL = "mpirun"
#: how long a restart waits for the failed attempt's ranks on this host to be gone (a restored
#: rank takes its original PID again); it goes on after that, and a rank whose PID is still
#: taken fails its restore in one line
RANKS_GONE_TIMEOUT = 30.0


@dataclass(frozen=True)
class UntilDone:
    restarts: int
    resume: Path | None
    #: this mpirun's parameters as the environment passes them on (Params.child_env): a restart
    #: runs with them, over those the snapshot recorded
    env: dict[str, str] = field(default_factory=dict)


def from_params(params: Params) -> UntilDone:
    """The job's settings; ParamError (one line) when a value is wrong, so that mpirun refuses
    it at launch."""
    restarts = params.get_int("snapc_base_restarts")
    if restarts < 0:
        raise ParamError(f"parameter snapc_base_restarts: {restarts} must be 0 (off) or a "
                         "positive number of restarts")
    text = params.get("snapc_base_resume").strip()
    if not text:
        return UntilDone(restarts, None, params.child_env())
    resume = Path(os.path.expanduser(text)).absolute()
    if resume.exists() and not resume.is_dir():
        raise ParamError(f"parameter snapc_base_resume: {resume} is not a directory")
    if resume.is_dir() and not (resume / META_FILE).exists() and any(resume.iterdir()):
        raise ParamError(f"parameter snapc_base_resume: {resume} is neither a global snapshot "
                         f"(no {META_FILE}) nor empty")
    return UntilDone(restarts, resume, params.child_env())


def attempt() -> int:
    """The restarts this job has had so far (0 in a job a user or a batch script started); taken
    out of the environment, so that the ranks do not inherit it."""
    text = os.environ.pop(jobenv.ENV_RESTART_ATTEMPT, "0")
    return int(text) if text.isdigit() else 0


def why_failed(status: int, coordinator: GlobalCoordinator) -> str | None:
    """Why the job failed, in words; None when it did not: it ended with status 0, or on purpose
    (a signal mpirun passed on to it, from a user or a batch system; a checkpoint on
    snapc_base_checkpoint_signal that ended it to be requeued)."""
    if status == 0 or coordinator.requeue or coordinator.passed_on is not None:
        return None
    if coordinator.restore_failure is not None:
        rank, why = coordinator.restore_failure
        return f"rank {rank} could not be restored ({why})"
    from .coordinator import dead_ranks

    links = sorted(coordinator.ranks.values(), key=lambda link: link.rank)
    if any(not link.alive and not link.finished for link in links):
        return dead_ranks(links)  # with the rank that failed, those the launcher ended after it
    if status < 0:
        return f"the launcher died of {signal.Signals(-status).name}"
    return f"the job ended with exit status {status}"


def resume_or_start(settings: UntilDone, program: list[str]) -> Path | None:
    """At the launch of a job with snapc_base_resume DIR: resume it from DIR's newest sequence
    that verifies (this process becomes the restarted job's mpirun), or return DIR, where the
    job starting afresh keeps its snapshots. SnapshotError when DIR cannot be resumed from: it
    holds another program's snapshot, or no sequence of it verifies (starting afresh would
    write over the job's history)."""
    resume = settings.resume
    if resume is None:
        return None
    gs = GlobalSnapshot(resume) if (resume / META_FILE).exists() else None
    if gs is None or not gs.finished:
        say(f"{resume} holds no finished sequence: starting the job (snapc_base_resume)")
        return resume
    recorded = recorded_program(gs)
    if recorded is not None and recorded != program:
        raise SnapshotError(f"parameter snapc_base_resume: {resume} holds a snapshot of another "
                            f"program ({' '.join(recorded)}); name another directory")
    seq, snaps, skipped = gs.newest_verified()
    restart = plan_restart(gs, seq, snaps)
    say(f"resuming from sequence {seq} of {resume} (snapc_base_resume){_skipped(skipped)}")
    restart.execute({**settings.env, jobenv.ENV_RESTART_ATTEMPT: "0"})


def restart_after_failure(why: str, coordinator: GlobalCoordinator, settings: UntilDone,
                          done: int) -> None:
    """The job failed (``why``) after ``done`` restarts: restart it from the newest sequence
    that verifies when snapc_base_restarts allows another (this process becomes the restarted
    job's mpirun); else say in one line why not, and return."""
    from crs.framework import ComponentError

    if settings.restarts == 0:
        return
    if done >= settings.restarts:
        say(f"{why}; no restart left (snapc_base_restarts {settings.restarts}, all used)")
        return
    try:
        gs = GlobalSnapshot(coordinator.snapshot_dir) \
            if (coordinator.snapshot_dir / META_FILE).exists() else None
        if gs is None or not gs.finished:
            say(f"{why} before the job's first checkpoint: nothing to restart from")
            return
        seq, snaps, skipped = gs.newest_verified()
        restart = plan_restart(gs, seq, snaps)
    except (SnapshotError, ComponentError) as exc:
        say(f"{why}; not restarted: {exc}")
        return
    say(f"{why}; restart {done + 1} of {settings.restarts} from sequence {seq} of "
        f"{gs.path}{_skipped(skipped)}")
    if jobenv.ENV_RESTART_IMAGES in restart.job_env:  # restored ranks take their PIDs again
        here = socket.gethostname()
        pids = [link.pid for link in coordinator.ranks.values() if link.host == here]
        deadline = time.monotonic() + RANKS_GONE_TIMEOUT
        while any(os.path.exists(f"/proc/{pid}") for pid in pids) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
    restart.execute({**settings.env, jobenv.ENV_RESTART_ATTEMPT: str(done + 1)})


def recorded_program(gs: GlobalSnapshot) -> list[str] | None:
    """The program and its arguments the job of ``gs`` was first started with, None when the
    snapshot does not say."""
    from .frontend import split_command_line

    try:
        argv = json.loads(gs.job("Mpirun Command") or "null")
    except ValueError:
        return None
    if not isinstance(argv, list) or len(argv) < 2:
        return None
    return split_command_line([str(a) for a in argv[1:]]).program or None


def _skipped(skipped: list[str]) -> str:
    return "".join(f"; {why}" for why in skipped)


def say(text: str) -> None:
    print(f"{TOOL}: {text}", file=sys.stderr, flush=True)
