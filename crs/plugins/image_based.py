"""What the image-based components (blcr, mtcp) share: the checks before they offer to save a
process, and how ompi-restart relaunches a rank they saved under the MPI layer."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from crs.hookspecs import Offer, Relaunch, Target
from crs.snapshot import LocalSnapshot

# set in every rank by the SnapC global coordinator (snapc/coordinator.py)
JOB_ENVIRONMENT = "PYCRS_JOBID"
#: snapshot metadata of a rank saved whole under the MPI layer (snapc.rank_image writes it as
#: ``CRCP Transparent: 1``): ompi-restart relaunches it as ``opal-restart <snapshot>``
TRANSPARENT_MARK = "CRCP Transparent"


def refusal(component: str, target: Target, how: str) -> Offer | None:
    """Why ``component`` cannot save ``target`` here, or None. ``how`` says how it is used."""
    if target.in_process and os.environ.get(JOB_ENVIRONMENT):
        return Offer(component, None, "cannot save the ranks of a job started without the MPI "
                     f"layer; start it with 'mpirun -am ft-enable-cr --mca crs {component}' "
                     "(docs/user-guide.md), or use the self component")
    if target.in_process:
        return Offer(component, None, how)
    if os.uname().machine != "x86_64":
        return Offer(component, None, f"supports x86-64 only, not {os.uname().machine}")
    return None


def unrestartable_here() -> str | None:
    """What a checkpoint tool says before it saves a process image (blcr, mtcp) that this user
    could not restart here: the caller may not choose PIDs, and the kernel forbids the user
    namespace an ordinary user restores in. None when a restart would work."""
    from crs.plugins.blcr.restore import may_choose_pids, userns_refusal

    if may_choose_pids():
        return None
    why = userns_refusal()
    if why is None:
        return None
    return ("warning: this kernel forbids the unprivileged user namespace an ordinary user "
            f"restarts process images (blcr, mtcp) in ({why}); only root can restart them")


def relaunch_restored_rank(snapshot: LocalSnapshot, relaunch: Relaunch) -> None:
    """The prelaunch of blcr and mtcp: a rank of a job restarted by ompi-restart whose snapshot
    is an image taken under the MPI layer is relaunched as ``opal-restart <snapshot>``, which
    the new launcher starts and which restores the rank as its child (the rank then takes the
    launcher's environment and PMI connection from it and joins the new job)."""
    if not relaunch.job or snapshot.meta.get(TRANSPARENT_MARK) != "1":
        return
    tool = Path(sys.executable).parent / "opal-restart"
    if tool.is_file():
        argv = [str(tool), str(snapshot.path)]
    else:
        argv = [sys.executable, "-m", "crs.cli.opal_restart", str(snapshot.path)]
    relaunch.executable, relaunch.argv = argv[0], argv
