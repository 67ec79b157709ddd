"""Layers above the CRS framework, found through an entry-point group: crs names none of them.

A package that builds on pycrs (SnapC, the job-wide coordination, is one) declares its layer in
the entry-point group ``pycrs.layers``. The entry point names an object (a module will do) with

``activate()``
    called by the start-up hook of a process under pycrs, once its runtime is active, in a
    process whose ``PYCRS_LAYERS`` names the layer: whoever launched the process (SnapC's
    ``mpirun``, for its ranks) puts the layer's entry-point name there;
``RESTART_VARIABLES``
    the environment variables by which the layer restarts a process: when one is set and the
    start-up fails, the process ends instead of starting the application from scratch.
``restore_failed(message) -> bool`` (optional)
    called by ``opal-restart`` when it cannot restore its process, in a process whose
    ``PYCRS_LAYERS`` names the layer (SnapC tells the restarted job's coordinator, which ends the
    job: its other ranks would wait for this one forever); True when the layer has reported the
    failure itself, and opal-restart then prints nothing more.

Loading a layer registers its MCA parameters: ``pycrs`` loads every installed layer, so that
``pycrs info`` lists their parameters and ``--mca`` accepts them. Only processes whose
``PYCRS_LAYERS`` is set look the group up at start-up (importing importlib.metadata and reading
every installed package's entry points costs tens of milliseconds).
"""
from __future__ import annotations

import os
from typing import Any

GROUP = "pycrs.layers"
#: the layers a process belongs to: entry-point names, comma-separated
ENV = "PYCRS_LAYERS"


def load(names: list[str] | None = None) -> list[Any]:
    """The installed layers (those named in ``names`` only, when given), loaded."""
    from importlib import metadata

    return [ep.load() for ep in metadata.entry_points(group=GROUP)
            if names is None or ep.name in names]


def of_this_process() -> list[Any]:
    """The layers ``PYCRS_LAYERS`` names, loaded (none without the variable: no look-up)."""
    names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    return load(names) if names else []


def environment(env: dict[str, str], name: str) -> dict[str, str]:
    """``PYCRS_LAYERS`` for the processes a layer launches: ``env``'s, with ``name`` added."""
    names = [n for n in env.get(ENV, "").split(",") if n and n != name]
    return {ENV: ",".join([*names, name])}


def report_restore_failure(message: str) -> bool:
    """Tell this process's layers that it could not be restored; True if one reported it."""
    reported = False
    for layer in of_this_process():
        hook = getattr(layer, "restore_failed", None)
        if hook is not None:
            reported = bool(hook(message)) or reported
    return reported
