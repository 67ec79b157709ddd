"""SnapC as a layer above the CRS framework, as crs finds it: through the entry point ``snapc``
of the group ``pycrs.layers`` (pyproject.toml; the protocol is in crs/layers.py). Importing it
registers SnapC's MCA parameters (``snapc/__init__.py``)."""
from __future__ import annotations

import os
import socket

from crs import endpoint

from . import jobenv

NAME = "snapc"  # the entry point's name, which our mpirun puts in its ranks' PYCRS_LAYERS
#: a rank restarted at safe points finds its sequence here
RESTART_VARIABLES = (jobenv.ENV_RESTART_SEQ_DIR,)


def activate() -> None:
    """In a rank of a C/R job started by our mpirun: connect to the job's global coordinator."""
    if os.environ.get(jobenv.ENV_ADDRESS):
        from .app_coordinator import activate_if_in_job

        activate_if_in_job()


def restore_failed(message: str) -> bool:
    """opal-restart could not restore this rank of a restarted job: tell the job's coordinator,
    which ends the job at once and says so in one line. False outside a job, or when the
    coordinator cannot be reached (opal-restart then reports the failure itself)."""
    from .launcher import rank_from_env

    address, ranks = os.environ.get(jobenv.ENV_ADDRESS), rank_from_env(os.environ)
    if not address or ranks is None:
        return False
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            endpoint.send(sock, {"op": "hello", "token": os.environ.get(jobenv.ENV_TOKEN, ""),
                                 "rank": ranks[0], "size": ranks[1], "pid": os.getpid(),
                                 "host": socket.gethostname(), "restore_failed": message})
    except (OSError, ValueError):
        return False
    return True
