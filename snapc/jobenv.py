"""The environment contract of a C/R job: the variables through which ``ompi-restart``, our
``mpirun`` (the global coordinator, ``snapc.frontend`` and ``snapc.coordinator``) and every
rank's app coordinator (``snapc.app_coordinator``) hand each other what they need, and the
LD_PRELOAD of the ranks of a transparent job. Those modules import this one; it imports none of
them.

    ompi-restart -> mpirun   PYCRS_RESTART_GLOBAL, PYCRS_RESTART_SEQ, PYCRS_RESTART_IMAGES
    mpirun -> mpirun         the same, and PYCRS_RESTART_ATTEMPT (snapc.autorestart)
    mpirun -> every rank     PYCRS_COORDINATOR, PYCRS_COORDINATOR_TOKEN, PYCRS_JOBID,
                             PYCRS_RESTART_SEQ_DIR (a restart at safe points),
                             PYCRS_CRCP and LD_PRELOAD (a transparent job: the MPI layer)
"""
from __future__ import annotations

from pathlib import Path

from . import crcp

#: where a rank finds the global coordinator (host:port) ...
ENV_ADDRESS = "PYCRS_COORDINATOR"
#: ... and the job's secret it says hello with
ENV_TOKEN = "PYCRS_COORDINATOR_TOKEN"
#: the job's ID, the PID of its mpirun
ENV_JOBID = "PYCRS_JOBID"
#: the sequence directory a rank restarts from (ranks that saved themselves at safe points)
ENV_RESTART_SEQ_DIR = "PYCRS_RESTART_SEQ_DIR"
#: set by ompi-restart for mpirun: the global snapshot and the sequence the job restarts from
ENV_RESTART_GLOBAL = "PYCRS_RESTART_GLOBAL"
ENV_RESTART_SEQ = "PYCRS_RESTART_SEQ"
#: set by mpirun when it restarts a job that failed (snapc.autorestart): the restarts so far
ENV_RESTART_ATTEMPT = "PYCRS_RESTART_ATTEMPT"
#: set by ompi-restart when the ranks are relaunched as ``opal-restart IMAGE``: they are restored
#: processes that hold the MPI layer already, not new ones to preload it into
ENV_RESTART_IMAGES = "PYCRS_RESTART_IMAGES"
#: set in the ranks of a transparent job: the component that saves them (``crcp.ENV_LAYER``)
ENV_LAYER = crcp.ENV_LAYER


def layer_libraries(component: str | None = None) -> list[Path]:
    """What the ranks of a transparent job saved with ``component`` have preloaded, in
    LD_PRELOAD order: for mtcp its kernel, then the MPI layer ``libcrcp.so``; for blcr the layer
    alone (the rank is saved from outside). Without a component, every library either may
    preload."""
    from crs.plugins import mtcp

    if component == "blcr":
        return [crcp.library_path()]
    return [mtcp.library_path(), crcp.library_path()]


def layer_environment(env: dict[str, str], component: str = "blcr") -> dict[str, str]:
    """What the ranks of a transparent job get: the libraries of ``component`` first in
    LD_PRELOAD, and the mark that tells their app coordinator to use the layer and which
    component saves the rank (``PYCRS_CRCP=<component>``)."""
    ours = [str(p) for p in layer_libraries(component)]
    return {"LD_PRELOAD": ":".join([*ours, *preload_without_layers(env)]),
            ENV_LAYER: component}


def preload_without_layers(env: dict[str, str]) -> list[str]:
    """``env``'s LD_PRELOAD entries other than the libraries a transparent job preloads."""
    every = {str(p) for p in layer_libraries()}
    return [p for p in env.get("LD_PRELOAD", "").replace(" ", ":").split(":")
            if p and p not in every]
