"""``opal-restart SNAPSHOT``: verify a local snapshot and bring its process back."""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from crs import params

from .errors import ToolParser, run_tool

if TYPE_CHECKING:
    from crs.hookspecs import Relaunch
    from crs.snapshot import LocalSnapshot

# The framework and the snapshot code are imported where they are used, after the arguments are
# parsed: --help and a usage mistake are answered without loading them.

TOOL = "opal-restart"


def build_parser() -> ToolParser:
    p = ToolParser(prog=TOOL, description="Verify a local snapshot and restart its process "
                   "from it.")
    params.add_arguments(p)
    p.add_argument("--showme", action="store_true",
                   help="print the command that would be run, run nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="report progress")
    p.add_argument("--stop", action="store_true",
                   help="leave the restored process stopped (image-based components)")
    p.add_argument("--detach", action="store_true",
                   help="print the restored process's PID and return instead of waiting for "
                        "it (image-based components)")
    p.add_argument("--pid-namespace", action="store_true",
                   help="restore into a fresh PID namespace, where the original PID is free "
                        "even when it is taken here (image-based components; without root "
                        "every restore goes into one, in a user namespace of its own)")
    p.add_argument("snapshot", metavar="SNAPSHOT",
                   help="snapshot directory (a path, or a name in crs_base_snapshot_dir)")
    return p


def find_snapshot(name: str, prm: params.Params) -> Path:
    """A path as given, else the name looked up in crs_base_snapshot_dir."""
    given = Path(name).expanduser()
    if given.exists() or given.is_absolute():
        return given
    return prm.get_path("crs_base_snapshot_dir") / name


def relaunch_for(snap: LocalSnapshot, prm: params.Params) -> Relaunch:
    """How to start the snapshot's program again, with its C/R parameters."""
    from crs.hookspecs import Relaunch
    from crs.launch import cr_environment
    from crs.snapshot import SnapshotError

    meta = snap.meta
    where = snap.path / "snapshot_meta.data"
    try:
        argv = json.loads(meta.get("Command") or "null")
        recorded = json.loads(meta.get("MCA Params") or "{}")
    except ValueError:
        raise SnapshotError(f"{where}: malformed Command or MCA Params record") from None
    executable, cwd = meta.get("Executable"), meta.get("CWD")
    if not argv or not executable or not cwd:
        raise SnapshotError(f"{where}: no Command, Executable or CWD record to relaunch from")
    env = cr_environment(os.environ, {**recorded, **prm.child_env()})
    return Relaunch(executable=executable, argv=argv, cwd=cwd, env=env)


def _run(argv: list[str] | None) -> int:
    ns = build_parser().parse_args(argv)
    from crs.framework import component_for_snapshot
    from crs.snapshot import LocalSnapshot

    prm = params.from_arguments(ns)
    prm.validate()  # a bad parameter must stop the restart, not reach the restarted process
    snap = LocalSnapshot(find_snapshot(ns.snapshot, prm))
    if ns.verbose:
        print(f"{TOOL}: verifying {snap.path}", file=sys.stderr)
    from crs import layers
    from crs.progress import Bar, Meter, summary, tree_bytes

    meter = Meter()
    with Bar(f"verifying {snap.path.name}", meter) as bar:
        snap.verify(meter=meter)
    component = component_for_snapshot(snap.component)
    relaunch = relaunch_for(snap, prm)
    relaunch.verbose, relaunch.stop, relaunch.detach = ns.verbose, ns.stop, ns.detach
    relaunch.pid_namespace = ns.pid_namespace
    component.call("crs_prelaunch", rank=0, snapshot=snap, relaunch=relaunch)
    if ns.showme:
        print(f"cd {shlex.quote(relaunch.cwd)} && {shlex.join(relaunch.argv)}")
        return 0
    if ns.verbose:
        print(f"{TOOL}: restarting with component {component.name}: {shlex.join(relaunch.argv)}",
              file=sys.stderr)
    if not os.environ.get(layers.ENV):  # not a rank of a restarted job (ompi-restart says it)
        size, t0 = tree_bytes(snap.path), bar.t0

        def restored(pid: int) -> None:
            print(f"{TOOL}: restored process {pid} from {snap.path} "
                  f"({summary(size, time.monotonic() - t0)})", file=sys.stderr, flush=True)

        relaunch.restored = restored  # an image rebuilt here: said once it runs again
        if component.name == "self":  # the program is started in place and loads its state
            print(f"{TOOL}: verified {snap.path} ({summary(meter(), bar.elapsed)}); restarting "
                  "it", file=sys.stderr)
    sys.stdout.flush()
    component.call("crs_init", params=prm)
    component.call("crs_restart", snapshot=snap, relaunch=relaunch, spawn=False)
    return 0


def _run_reporting(argv: list[str] | None) -> int:
    """``_run``; a failure is also told to the layers (a rank of a restarted job: the job must
    end), and not printed again here when a layer has reported it."""
    from .errors import expected

    try:
        return _run(argv)
    except Exception as exc:
        if not isinstance(exc, expected()):
            raise
        from crs import layers

        text = f"{exc.filename}: {exc.strerror or exc}" if (
            isinstance(exc, OSError) and exc.filename) else str(exc)
        if layers.report_restore_failure(text):
            return 1
        raise


def main(argv: list[str] | None = None) -> None:
    run_tool(TOOL, lambda: _run_reporting(argv))
