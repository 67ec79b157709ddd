"""Save one MPI rank as a process image, from its own child: ``python -m snapc.rank_image
REQUEST``.

In a transparent checkpoint (``mpirun -am ft-enable-cr --mca crs blcr|mtcp``) each rank's app
coordinator tears MPI down through the layer (``snapc.crcp``), closes its connection to the
global coordinator so that the image holds no network socket, and starts this program, which
has its parent saved into the rank's local snapshot of the sequence being written and commits
it: with blcr it dumps the parent from outside (ptrace); with mtcp it asks the kernel preloaded
in the parent to write the image (MtcpComponent, as opal-checkpoint does). The parent waits for
it; when the image is restored in a new job the wait returns there too (the restored process
has no such child), and the app coordinator tells the two cases apart by its parent.

REQUEST is a JSON object: ``component`` (``blcr``, the default, or ``mtcp``), ``pid`` (the
rank), ``rank``, ``final`` (the local snapshot to commit, ``<partial seq
dir>/opal_snapshot_<rank>.ckpt``), ``error`` (a file to write a one-line reason to when the
image fails: stdout and stderr are the rank's own, shared with the application, and no pipe may
link the two processes while the image is taken), ``executable``, ``command``, ``cwd`` (how the
rank was started, as the self component records it), ``mca`` (its OMPI_MCA_* parameters),
``omit_fds`` (descriptors to leave out of the image: the launcher's PMI connection, which the
layer keeps for a rebuild in the same job). Exit status 0 when the snapshot is committed, 1
otherwise.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from crs.plugins.image_based import TRANSPARENT_MARK
from snapc.crcp import COMPONENTS


def component_of(request: dict[str, Any]) -> str:
    name = request.get("component", "blcr")
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {name!r} (the image of a rank is taken by "
                         f"{' or '.join(COMPONENTS)})")
    return name


def save(request: dict[str, Any]) -> Path:
    from crs import params
    from crs.hookspecs import CheckpointOptions, Target
    from crs.snapshot import SnapshotWriter, standard_meta

    name = component_of(request)
    prm = params.Params()
    pid, final = int(request["pid"]), Path(request["final"])
    omit = {int(fd) for fd in request.get("omit_fds", ())}
    with SnapshotWriter(final, fsync=prm.get_bool("crs_base_fsync"),
                        create_parent=False) as writer:
        standard_meta(writer.meta, name, pid, writer.final)
        writer.meta.add("Executable", request["executable"])
        writer.meta.add("Command", list(request["command"]))
        writer.meta.add("CWD", request["cwd"])
        writer.meta.add("MCA Params", dict(request.get("mca", {})))
        writer.meta.add("MPI Rank", str(request["rank"]))
        writer.meta.add(TRANSPARENT_MARK, "1")
        if name == "mtcp":
            from crs.plugins.mtcp.component import MtcpComponent

            # the rank's own crs_mtcp_* parameters (its environment), and the omitted
            # descriptors added to any it was given
            mtcp = MtcpComponent()
            mtcp.crs_init(prm)
            given = {int(fd) for fd in mtcp.omit.split(",") if fd}
            mtcp.omit = ",".join(str(fd) for fd in sorted(given | omit))
            mtcp.crs_checkpoint(Target(pid, in_process=False), writer, CheckpointOptions())
        else:
            from crs.plugins.blcr.dump import dump

            timings = dump(pid, writer, CheckpointOptions(), omit=omit, parent_ok=True)
            writer.meta.add("BLCR Frozen Seconds", f"{timings['frozen']:.6f}")
        return writer.commit()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    request = json.loads(args[0])
    name = request.get("component", "blcr")
    try:
        save(request)
    except BaseException as exc:  # noqa: BLE001 - reported by the rank, in one line
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, OSError) and exc.filename:
            message = f"{exc.filename}: {exc.strerror or exc}"
        try:
            Path(request["error"]).write_text(f"{name}: {message}\n")
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
