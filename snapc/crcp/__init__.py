"""The MPI layer that makes an mpi4py rank restartable from a process image (Open MPI's CRCP
"bookmark" protocol and PML wrapper, rebuilt below mpi4py).

``libcrcp.so`` is preloaded into every rank of a C/R job whose ``crs`` selects an image-based
component (blcr or mtcp); it defines the ``MPI_*`` functions mpi4py calls and reaches MPICH through
``PMPI_*``. On request it brings the job to a consistent cut (collectives agreed, in-flight
messages received into the layer), tears MPI down so that the image holds no MPI state, and
rebuilds it after the image is taken, in the same job or, after a restart, in a new one, with
every handle the application holds still valid. How and why: docs/design/transparent-mpi.md.

This module is its Python control interface, used by the rank's app coordinator.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

#: set in the ranks' environment by our mpirun when it preloads the layer; its value names the
#: component the ranks are saved with
ENV_LAYER = "PYCRS_CRCP"
#: the components that save a rank under the layer whole, as a process image
COMPONENTS = ("blcr", "mtcp")


class LayerError(RuntimeError):
    """The layer refused or failed a step; the one-line message says why."""


def library_path() -> Path:
    """Where the package build put the layer."""
    return Path(__file__).with_name("libcrcp.so")


def component() -> str:
    """The crs component the layer was launched for (``PYCRS_CRCP``): ``mtcp`` (the rank's
    kernel writes its image) or ``blcr`` (a child of the rank saves it from outside; also for
    any other value, as the layer was first marked with ``1``)."""
    value = os.environ.get(ENV_LAYER, "")
    return value if value in COMPONENTS else "blcr"


def _lib() -> ctypes.CDLL | None:
    """The layer's exported functions when it is loaded in this process (preloaded), else None."""
    process = ctypes.CDLL(None)
    if not hasattr(process, "crcp_quiesce"):
        return None
    for name in ("crcp_quiesce", "crcp_resume"):
        fn = getattr(process, name)
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        fn.restype = ctypes.c_int
    process.crcp_active.restype = ctypes.c_int
    process.crcp_launcher_fd.restype = ctypes.c_int
    process.crcp_stats.argtypes = [ctypes.POINTER(ctypes.c_double)]
    return process


def loaded() -> bool:
    """Whether the layer is loaded in this process."""
    return _lib() is not None


def active() -> bool:
    """Whether the application's MPI runs through the layer now (initialized, not finalized)."""
    lib = _lib()
    return bool(lib and lib.crcp_active())


def launcher_fds() -> list[int]:
    """Descriptors the image must leave out: the launcher's PMI connection, which stays open for
    a rebuild in the same job (a restored rank takes its new launcher's instead)."""
    lib = _lib()
    fd = lib.crcp_launcher_fd() if lib is not None else -1
    return [fd] if fd >= 0 else []


def _call(name: str, arg: int) -> None:
    lib = _lib()
    if lib is None:
        raise LayerError("the MPI layer (libcrcp.so) is not loaded in this rank")
    err = ctypes.create_string_buffer(512)
    if getattr(lib, name)(arg, err, len(err)) != 0:
        raise LayerError(err.value.decode(errors="replace") or f"{name} failed")


def quiesce(timeout: float = 0.0) -> None:
    """Collective over the job: reach a consistent cut, receive what is in flight into the
    layer and tear MPI down. The image may be taken when this returns. ``timeout`` (seconds,
    0 = none) bounds the wait for the cut. On failure MPI is up again and the job goes on."""
    _call("crcp_quiesce", int(timeout * 1000))


def resume(restarted: bool) -> None:
    """After the image: bring MPI back (after a restart, in the new job, whose launcher is this
    process's parent) and let the application go on."""
    _call("crcp_resume", 1 if restarted else 0)


def stats() -> dict[str, float]:
    """Figures of the last quiesce/resume cycle, in seconds (and messages drained)."""
    lib = _lib()
    out = (ctypes.c_double * 6)()
    if lib is not None:
        lib.crcp_stats(out)
    return dict(zip(("cut", "drain", "teardown", "rebuild", "drained_messages",
                     "drained_bytes"), out, strict=True))
