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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        __getattr__("disable_checkpoint")()

    def __exit__(self, *exc: object) -> None:
        __getattr__("enable_checkpoint")()


_CALLBACKS, _RUNTIME = "crs.plugins.self.callbacks", "crs.runtime"
_API = {
    "init": _CALLBACKS, "on_checkpoint": _CALLBACKS, "on_continue": _CALLBACKS,
    "on_restart": _CALLBACKS, "restored": _CALLBACKS,
    "CheckpointError": _RUNTIME, "checkpoint": _RUNTIME, "disable_checkpoint": _RUNTIME,
    "enable_checkpoint": _RUNTIME, "is_active": _RUNTIME, "safe_point": _RUNTIME,
    "State": "crs.states",
}


def __getattr__(name: str) -> Any:
    """The application API, imported at its first use (PEP 562): the tools and the start-up
    hook import parts of this package and do not pay for the rest. With any of it comes the
    self component's delivery of restored state at the next safe point (callbacks.py)."""
    where = _API.get(name)
    if where is None:
        raise AttributeError(f"module 'crs' has no attribute {name!r}")
    import importlib

    importlib.import_module(_CALLBACKS)
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value  # later uses are plain look-ups (safe_point() runs in hot loops)
    return value


__all__ = [
    "CheckpointError", "State", "checkpoint", "disable_checkpoint", "enable_checkpoint", "init",
    "is_active", "no_checkpoint", "on_checkpoint", "on_continue", "on_restart", "restored",
    "safe_point",
]
