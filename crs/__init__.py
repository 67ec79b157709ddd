"""pycrs: checkpoint/restart for Python (and mpi4py) applications.

The application-facing API of the ``self`` component and the runtime::

    import crs

    @crs.on_checkpoint
    def save():
        return {"step": step, "field": field}      # numpy arrays are written without copies

    state = crs.restored()                          # the saved state after a restart, else None
    for step in range(start, n):
        crs.safe_point()                            # pending checkpoint requests run here
        ...
"""
from .plugins.self.callbacks import init, on_checkpoint, on_continue, on_restart, restored
from .runtime import (
    CheckpointError,
    checkpoint,
    disable_checkpoint,
    enable_checkpoint,
    is_active,
    safe_point,
)
from .states import State

__version__ = "0.1.0"


class no_checkpoint:
    """Context manager for a critical section: checkpoint requests wait until it ends."""

    def __enter__(self) -> None:
        disable_checkpoint()

    def __exit__(self, *exc: object) -> None:
        enable_checkpoint()


__all__ = [
    "CheckpointError", "State", "checkpoint", "disable_checkpoint", "enable_checkpoint", "init",
    "is_active", "no_checkpoint", "on_checkpoint", "on_continue", "on_restart", "restored",
    "safe_point",
]
