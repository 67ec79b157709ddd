"""What the image-based components (blcr, mtcp) check before they offer to save a process."""
from __future__ import annotations

import os

from crs.hookspecs import Offer, Target

# set in every rank by the SnapC global coordinator (snapc/coordinator.py)
JOB_ENVIRONMENT = "PYCRS_JOBID"


def refusal(component: str, target: Target, how: str) -> Offer | None:
    """Why ``component`` cannot save ``target`` here, or None. ``how`` says how it is used."""
    if target.in_process and os.environ.get(JOB_ENVIRONMENT):
        if component == "mtcp":
            return Offer(component, None, "cannot save the ranks of an MPI job yet (transparent "
                         "checkpoint with mtcp is not built; docs/design/transparent-mpi.md); "
                         "use blcr or the self component")
        return Offer(component, None, "cannot save the ranks of a job started without the MPI "
                     "layer; start it with 'mpirun -am ft-enable-cr --mca crs blcr' "
                     "(docs/user-guide.md), or use the self component")
    if target.in_process:
        return Offer(component, None, how)
    if os.uname().machine != "x86_64":
        return Offer(component, None, f"supports x86-64 only, not {os.uname().machine}")
    return None
