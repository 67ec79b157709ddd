"""``opal-checkpoint PID``: take a local snapshot of one process running under pycrs."""
from __future__ import annotations

import sys
from pathlib import Path

from crs import endpoint, params
from crs.snapshot import local_snapshot_name

from .errors import ToolParser, UsageError, run_tool

TOOL = "opal-checkpoint"


def build_parser() -> ToolParser:
    p = ToolParser(prog=TOOL, description="Checkpoint a single process running under pycrs.")
    params.add_arguments(p)
    p.add_argument("-w", "--where", metavar="DIR",
                   help="directory for the snapshot (default: crs_base_snapshot_dir)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--term", action="store_true", help="end the process after the checkpoint")
    mode.add_argument("--stop", action="store_true",
                      help="stop the process (SIGSTOP) after the checkpoint")
    p.add_argument("-v", "--verbose", action="store_true", help="report progress")
    p.add_argument("pid", metavar="PID", help="process to checkpoint")
    return p


def _run(argv: list[str] | None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        pid = int(ns.pid)
    except ValueError:
        raise UsageError(f"PID must be a number, not {ns.pid!r}") from None
    prm = params.from_arguments(ns)
    prm.validate()
    where = Path(ns.where).expanduser() if ns.where else prm.get_path("crs_base_snapshot_dir")
    target = where.absolute() / local_snapshot_name(pid)

    def progress(event: dict) -> None:
        if ns.verbose:
            print(f"{TOOL}: {event.get('message') or event.get('event')}"
                  + (f" (component {event['component']})" if event.get("component") else ""),
                  file=sys.stderr)

    if ns.verbose:
        print(f"{TOOL}: checkpointing process {pid} into {target}", file=sys.stderr)
    reply = endpoint.request(endpoint.connect(pid),
                             {"op": "checkpoint", "path": str(target), "crs": prm.cli.get("crs"),
                              "term": ns.term, "stop": ns.stop},
                             progress, what=f"process {pid}")
    if reply["event"] == "error":
        print(f"{TOOL}: checkpoint of process {pid} failed: {reply['message']}", file=sys.stderr)
        return 1
    print(f"Local Snapshot Reference: {reply['snapshot']}")
    return 0


def main(argv: list[str] | None = None) -> None:
    run_tool(TOOL, lambda: _run(argv))
