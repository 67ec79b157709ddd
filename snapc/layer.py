"""SnapC as a layer above the CRS framework, as crs finds it: through the entry point ``snapc``
of the group ``pycrs.layers`` (pyproject.toml; the protocol is in crs/layers.py). Importing it
registers SnapC's MCA parameters (``snapc/__init__.py``)."""
from __future__ import annotations

import os

from . import jobenv

NAME = "snapc"  # the entry point's name, which our mpirun puts in its ranks' PYCRS_LAYERS
#: a rank restarted at safe points finds its sequence here
RESTART_VARIABLES = (jobenv.ENV_RESTART_SEQ_DIR,)


def activate() -> None:
    """In a rank of a C/R job started by our mpirun: connect to the job's global coordinator."""
    if os.environ.get(jobenv.ENV_ADDRESS):
        from .app_coordinator import activate_if_in_job

        activate_if_in_job()
