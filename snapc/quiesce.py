"""The collective steps of a coordinated checkpoint, over mpi4py on a private communicator.

They run at the agreed safe point, on the application's thread, in every rank at once: check that
no message is left in flight, then agree on the outcome. Without mpi4py in the process (a job of
non-MPI Python programs) there is nothing to quiesce and the coordinator alone agrees.
"""
from __future__ import annotations

import ctypes
import os
import sys
from types import ModuleType
from typing import Any

from crs.runtime import CheckpointError

_comm: Any = None


def mpi() -> ModuleType | None:
    """mpi4py's MPI module when the application uses MPI and it is live, else None."""
    module = sys.modules.get("mpi4py.MPI")
    if module is None or not module.Is_initialized() or module.Is_finalized():
        return None
    return module  # type: ignore[return-value]


def private_comm() -> Any:
    """A duplicate of COMM_WORLD that only pycrs uses (made at the first checkpoint, when every
    rank is at the same safe point, so the collective Dup cannot interleave with the app's)."""
    global _comm
    MPI = mpi()
    if MPI is None:
        return None
    if _comm is None:
        _comm = MPI.COMM_WORLD.Dup()
        _comm.Set_name("pycrs-snapc")
    return _comm


def ensure_quiet(comm: Any) -> None:
    """After every rank reached the safe point, no message to this rank may be waiting.

    A best-effort check of COMM_WORLD: it finds messages that have arrived (MPI gives no way to
    see those still on the wire, nor to probe the application's own communicators)."""
    MPI = mpi()
    comm.Barrier()
    status = MPI.Status()  # type: ignore[union-attr]
    if MPI.COMM_WORLD.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status):  # type: ignore[union-attr]
        raise CheckpointError(
            f"a message from rank {status.Get_source()} (tag {status.Get_tag()}) is still "
            "undelivered at the agreed safe point: mark safe points where no message is in flight"
        )


def agree(comm: Any, ok: bool) -> bool:
    """Whether every rank succeeded (an allreduce with logical and)."""
    MPI = mpi()
    return bool(comm.allreduce(ok, op=MPI.LAND))  # type: ignore[union-attr]


def finalize_and_exit(comm: Any) -> None:
    """End this rank cleanly after a checkpoint with --term: the launcher sees a normal exit."""
    MPI = mpi()
    if comm is not None and MPI is not None:
        comm.Barrier()
        MPI.Finalize()
    sys.stdout.flush()
    sys.stderr.flush()
    # libc's exit, not os._exit: MPICH tells its launcher it finalized from a C exit handler;
    # without it hydra takes the exit for a failure and kills the job (status 9).
    ctypes.CDLL(None).exit(0)
    os._exit(0)  # not reached
