"""The application's side of the ``self`` component: its checkpoint, continue and restart callbacks.

Two ways to provide them:

* Pythonic: ``@crs.on_checkpoint`` (returns the state to save), ``@crs.on_continue`` and
  ``@crs.on_restart`` (receives the saved state), or ``crs.restored()`` to fetch it.
* Open MPI's by-name convention: functions ``<prefix>_checkpoint``, ``<prefix>_continue`` and
  ``<prefix>_restart`` in ``__main__``, where the prefix is the ``crs_self_prefix`` parameter
  (default ``opal_crs_self_user``).

On a restart the saved state is handed over once, before the application resumes: at
registration of a restart callback, at ``crs.restored()``, or at the latest at the first safe point.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crs import params as _params, runtime

_params.register("crs_self_prefix", "opal_crs_self_user",
                 "Prefix of the by-name callbacks of the self component in __main__")

Checkpoint = Callable[[], Any]
Continue = Callable[[], None]
Restart = Callable[[Any], None]


@dataclass
class Callbacks:
    checkpoint: Checkpoint | None = None
    continue_: Continue | None = None
    restart: Restart | None = None


_registered = Callbacks()
_lock = threading.Lock()
_NOT_LOADED = object()
_restored: Any = _NOT_LOADED
_delivered = False


def on_checkpoint(fn: Checkpoint) -> Checkpoint:
    """Register the function that returns the state to save (any picklable object)."""
    _registered.checkpoint = fn
    return fn


def on_continue(fn: Continue) -> Continue:
    """Register the function called after a checkpoint when the process goes on."""
    _registered.continue_ = fn
    return fn


def on_restart(fn: Restart) -> Restart:
    """Register the function that receives the saved state; in a restarted process it is
    called right away, before this returns."""
    global _delivered
    _registered.restart = fn
    state = restored()
    if state is not None:
        _delivered = True
        fn(state)
    return fn


def by_name(prefix: str) -> Callbacks:
    """Callbacks found in ``__main__`` under Open MPI's naming convention."""
    main = vars(sys.modules.get("__main__", object()))

    def find(suffix: str) -> Any:
        fn = main.get(f"{prefix}_{suffix}")
        return fn if callable(fn) else None

    return Callbacks(find("checkpoint"), find("continue"), find("restart"))


def current() -> Callbacks:
    """The callbacks in force: registered ones first, else by-name ones."""
    named = by_name(runtime.params().get("crs_self_prefix"))
    return Callbacks(
        _registered.checkpoint or named.checkpoint,
        _registered.continue_ or named.continue_,
        _registered.restart or named.restart,
    )


def restored() -> Any:
    """The state saved at the checkpoint this process was restarted from; None otherwise."""
    global _restored
    snap = runtime.restart_snapshot()
    if snap is None:
        return None
    with _lock:
        if _restored is _NOT_LOADED:
            from crs.snapshot import LocalSnapshot

            from . import statefile

            _restored = statefile.load(LocalSnapshot(snap))
    return _restored


def _deliver_at_safe_point(snapshot: object) -> None:
    """First safe point of a restarted process: make sure the state reached the application."""
    global _delivered
    if _delivered or _restored is not _NOT_LOADED:
        return
    fn = current().restart
    if fn is None:
        print(f"pycrs: restarted from {snapshot}, but the application registered no restart "
              "callback and never called crs.restored(): its saved state was not used",
              file=sys.stderr)
        return
    _delivered = True
    fn(restored())


runtime.on_restart_delivery(_deliver_at_safe_point)


def init() -> Any:
    """Open MPI style start-up: deliver the saved state to a by-name restart callback now.
    Returns the restored state, or None when this is not a restart."""
    global _delivered
    state = restored()
    fn = current().restart
    if state is not None and fn is not None and not _delivered:
        _delivered = True
        fn(state)
    return state
