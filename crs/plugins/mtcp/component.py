"""The ``mtcp`` CRS component: the process saves itself with the in-process checkpoint kernel
(priority 15, as Open MPI's), and is restored like a blcr image, which it writes.

``opal-checkpoint --mca crs mtcp PID`` asks the kernel of process PID (its socket
``<control dir>/mtcp-PID.sock``) to write its image into the snapshot being built, then commits
the snapshot here. ``opal-restart`` rebuilds the process from that image as its child, with the
restart program (restart.py; ``crs_mtcp_restart=ptrace``: the restorer of the blcr component);
the restored kernel serves requests again.

The ranks of an MPI job checkpointed transparently (``mpirun -am ft-enable-cr --mca crs mtcp``)
have the kernel preloaded beside the MPI layer; a child of each rank (``snapc.rank_image``) asks
it for the image as opal-checkpoint does, leaving the launcher's PMI connection out
(``crs_mtcp_omit_fds``), and ``ompi-restart`` relaunches each such rank as ``opal-restart <its
snapshot>``, as for blcr.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

from crs import endpoint
from crs.framework import CRSError
from crs.hookspecs import CheckpointOptions, Offer, Relaunch, Target, hookimpl
from crs.params import Params
from crs.plugins.image_based import refusal, relaunch_restored_rank
from crs.snapshot import LocalSnapshot, SnapshotWriter
from crs.states import State

from . import COMPRESS, library_path, socket_path

PRIORITY = 15
RESTORERS = ("program", "ptrace")  # crs_mtcp_restart: the restart program, or blcr's restorer
PAGES, CRCS, CHUNK = "pages.img", "pages.crc", 1 << 20  # as the blcr image format


def how_to_load() -> str:
    return (f"start it with 'pycrs run --mca crs mtcp PROGRAM' or "
            f"LD_PRELOAD={library_path()}")


class MtcpComponent:
    name = "mtcp"
    default_priority = PRIORITY
    needs_safe_point = False

    def __init__(self) -> None:
        self.truncate_files = True
        self.restorer = "program"
        self.forked = False
        self.omit = ""
        self.compress = "none"
        self.timings: dict[str, float] = {}
        self.sizes: dict[str, int] = {}

    @hookimpl
    def crs_query(self, target: Target, params: Params) -> Offer:
        refused = refusal(self.name, target, "a process saves itself with mtcp on request "
                          "from outside (use opal-checkpoint --mca crs mtcp PID)")
        if refused:
            return refused
        if not library_path().exists():
            return Offer(self.name, None, f"the kernel library {library_path()} is not built")
        if target.pid <= 0 or not os.path.exists(f"/proc/{target.pid}"):
            return Offer(self.name, None, f"no process with PID {target.pid}")
        if not socket_path(target.pid).exists():
            return Offer(self.name, None, f"process {target.pid} has no mtcp kernel loaded "
                         f"({how_to_load()})")
        return Offer(self.name, PRIORITY)

    @hookimpl
    def crs_init(self, params: Params) -> None:
        self.truncate_files = params.get_bool("crs_mtcp_truncate_files")
        self.restorer = params.get("crs_mtcp_restart").strip().lower()
        if self.restorer not in RESTORERS:
            raise CRSError(f"crs_mtcp_restart: unknown value {self.restorer!r} "
                           f"(use {', '.join(RESTORERS)})")
        self.forked = params.get_bool("crs_mtcp_forked")
        self.omit = params.get("crs_mtcp_omit_fds").replace(" ", "")
        if any(not fd.isdigit() for fd in self.omit.split(",") if fd):
            raise CRSError(f"crs_mtcp_omit_fds: {self.omit!r} is not a list of descriptor "
                           "numbers")
        self.compress = params.get("crs_mtcp_compress").strip().lower() or "none"
        if self.compress not in COMPRESS:
            raise CRSError(f"crs_mtcp_compress: unknown value {self.compress!r} "
                           f"(use {', '.join(COMPRESS)})")

    @hookimpl
    def crs_checkpoint(self, target: Target, snapshot: SnapshotWriter,
                       options: CheckpointOptions) -> State:
        pid = target.pid
        try:
            sock = endpoint.connect(pid, path=socket_path(pid), hint=how_to_load())
        except endpoint.EndpointError as exc:
            raise CRSError(str(exc)) from None
        request = {"op": "checkpoint", "dir": str(snapshot.directory),
                   "forked": int(self.forked), "compress": self.compress, "omit": self.omit}
        reply = endpoint.request(sock, request, what=f"process {pid}")
        if reply["event"] == "error":
            raise CRSError(f"process {pid}: {reply.get('message')}")
        self.timings = {k: float(reply.get(k, 0.0)) for k in ("frozen", "total")}
        self.sizes = {k: int(reply.get(k, 0)) for k in ("raw_bytes", "stored_bytes")}
        _mark_shared_files(snapshot, pid)
        _include_image(snapshot)
        meta = snapshot.meta
        meta.add("MTCP Frozen Seconds", f"{self.timings['frozen']:.6f}")
        meta.add("MTCP Write Seconds", f"{self.timings['total']:.6f}")
        meta.add("MTCP Forked", "1" if self.forked else "0")
        meta.add("MTCP Compress", self.compress)
        meta.add("MTCP Pages Bytes", f"{self.sizes['raw_bytes']} {self.sizes['stored_bytes']}")
        if options.stop:
            os.kill(pid, signal.SIGSTOP)
        return State.TERM if options.term else State.CONTINUE

    @hookimpl
    def crs_prelaunch(self, rank: int, snapshot: LocalSnapshot, relaunch: Relaunch) -> None:
        relaunch_restored_rank(snapshot, relaunch)

    @hookimpl
    def crs_restart(self, snapshot: LocalSnapshot, relaunch: Relaunch,
                    spawn: bool) -> subprocess.Popen[bytes] | None:
        from crs.plugins.blcr.restore import restart_as_child

        from . import restart

        return restart_as_child(self.name, snapshot, relaunch, spawn, self.truncate_files,
                                restart.restore if self.restorer == "program" else None)


def _mark_shared_files(snapshot: SnapshotWriter, pid: int) -> None:
    """The kernel sees only its own process: which of the files it writes other processes hold
    too is found from here, and recorded in its image (blcr's rule, fds.mark_shared_files)."""
    from crs.plugins.blcr import fds

    path = snapshot.directory / "image.json"
    try:
        image = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CRSError(f"the mtcp kernel's image.json cannot be read: {exc}") from None
    fds.mark_shared_files(pid, image.get("fds", []))
    if any(r.get("shared") for r in image.get("fds", [])):
        path.write_text(json.dumps(image))


def _include_image(snapshot: SnapshotWriter) -> None:
    """Record the files the kernel wrote: pages.img checked by its CRCs, the rest hashed."""
    names: list[Any] = sorted(os.listdir(snapshot.directory))
    for required in ("image.json", PAGES, CRCS):
        if required not in names:
            raise CRSError(f"the mtcp kernel did not write {required}")
    for name in names:
        snapshot.include(name, f"crc32c/{CHUNK}:{CRCS}" if name == PAGES else None)


component = MtcpComponent()
