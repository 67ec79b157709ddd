"""``opal-checkpoint PID``: take a local snapshot of one process.

A process running under pycrs saves itself, through its control endpoint. The tool itself saves
a process with a component named by ``--mca crs``: ``blcr`` from outside (any process of the
user), ``mtcp`` through the checkpoint kernel loaded in the process, which writes the image while
the tool commits the snapshot. A process that does not run under pycrs is saved this way too,
with the highest priority of those components that can serve it.
"""
from __future__ import annotations

import glob
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from crs import params

from .errors import ToolParser, UsageError, run_tool

if TYPE_CHECKING:
    from crs.hookspecs import CheckpointOptions

# The framework, the endpoint and the snapshot code are imported where they are used, after the
# arguments are parsed: --help and a usage mistake are answered without loading them.

TOOL = "opal-checkpoint"


def build_parser() -> ToolParser:
    p = ToolParser(prog=TOOL, description="Checkpoint one process into a local snapshot: one "
                   "under pycrs saves itself, any other of yours is saved from outside "
                   "(--mca crs blcr, or mtcp through its kernel).")
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
    from crs import endpoint
    from crs.hookspecs import CheckpointOptions
    from crs.progress import Bar, summary, tree_bytes
    from crs.snapshot import local_snapshot_name

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
    _wait_while_starting(pid, prm)
    _warn_if_unrestartable(prm)
    with Bar(f"checkpoint of process {pid}", lambda: tree_bytes(*_being_written(target))) as bar:
        if _from_outside(prm) or _outside_only(pid, prm):
            path = _save_from_outside(pid, target, prm, CheckpointOptions(ns.term, ns.stop),
                                      ns.verbose)
        else:
            reply = endpoint.request(endpoint.connect(pid, hint=HINT),
                                     {"op": "checkpoint", "path": str(target),
                                      "crs": prm.cli.get("crs"), "term": ns.term,
                                      "stop": ns.stop}, progress, what=f"process {pid}")
            if reply["event"] == "error":
                print(f"{TOOL}: checkpoint of process {pid} failed: {reply['message']}",
                      file=sys.stderr)
                return 1
            path = Path(reply["snapshot"])
    # the reference line as Open MPI prints it (scripts take its last word); the figures apart
    print(f"Local Snapshot Reference: {path}", flush=True)
    print(f"{TOOL}: saved process {pid}: {summary(tree_bytes(path), bar.elapsed)}",
          file=sys.stderr)
    return 0


def _being_written(target: Path) -> list[Path]:
    """The directories a snapshot of ``target`` is being written in (crs.snapshot.aside_name)."""
    from crs.snapshot import PARTIAL

    try:
        return list(target.parent.glob(f".{glob.escape(target.name)}{PARTIAL}*"))
    except OSError:
        return []


HINT = ("start it with 'pycrs run' or with checkpoint/restart enabled, or save it from outside "
        "with --mca crs blcr (or mtcp, for a process with the mtcp kernel loaded)")


def _warn_if_unrestartable(prm: params.Params) -> None:
    """Before a process image is taken (and --term ends the process): one line when this user
    could not restart it here."""
    from crs import framework
    from crs.plugins.image_based import unrestartable_here

    include, exclude = framework.parse_selection(prm.get("crs"))
    if include is not None and not include & IMAGES - exclude:
        return
    line = unrestartable_here()
    if line:
        print(f"{TOOL}: {line}", file=sys.stderr, flush=True)


IMAGES = frozenset({"blcr", "mtcp"})


def _wait_while_starting(pid: int, prm: params.Params) -> None:
    """A process pycrs is still starting (``pycrs run ... & opal-checkpoint $!``) is given up to
    crs_base_startup_timeout to serve its control endpoint, and its mtcp kernel, if it is
    started with one, to serve the kernel's."""
    from crs import endpoint, framework, starting
    from crs.plugins.mtcp import library_path, socket_path

    timeout = prm.get_int("crs_base_startup_timeout")
    include, exclude = framework.parse_selection(prm.get("crs"))
    if not endpoint.process_socket(pid).exists() and (include is None or include - OUTSIDE):
        starting.wait_for(endpoint.process_socket(pid), pid,
                          lambda: starting.cr_enabled_in(pid), timeout)
    if "mtcp" in (include or {"mtcp"}) - exclude and not socket_path(pid).exists():
        starting.wait_for(socket_path(pid), pid,
                          lambda: starting.preloads(pid, library_path()), timeout)


def _from_outside(prm: params.Params) -> bool:
    """Whether the ``crs`` selection names only components that save a process from outside."""
    from crs import framework

    include, _ = framework.parse_selection(prm.get("crs"))
    return bool(include) and include <= OUTSIDE


OUTSIDE = {"blcr", "mtcp"}  # saved by (or through) this tool, the snapshot committed here


def _outside_only(pid: int, prm: params.Params) -> bool:
    """A process of ours that does not run under pycrs can only be saved from outside: do so
    when the ``crs`` selection allows such a component (the framework then picks it, as the
    highest priority that can serve)."""
    from crs import endpoint, framework

    if not Path(f"/proc/{pid}").exists() or endpoint.process_socket(pid).exists():
        return False
    include, exclude = framework.parse_selection(prm.get("crs"))
    return bool(((include or OUTSIDE) & OUTSIDE) - exclude)


def _save_from_outside(pid: int, target: Path, prm: params.Params, options: CheckpointOptions,
                       verbose: bool) -> Path:
    """Run the component here, against the process, and commit the snapshot; return it."""
    from crs import framework
    from crs.hookspecs import Target
    from crs.snapshot import SnapshotWriter, standard_meta

    outside = Target(pid, in_process=False)
    include, _ = framework.parse_selection(prm.get("crs"))
    if include is not None and len(include) == 1:  # the one asked for: its own reason, alone
        offer = next((o for o in framework.offers(outside, prm) if o.component in include), None)
        if offer is not None and offer.priority is None:
            raise framework.CRSError(offer.reason)
    component = framework.select(outside, prm)
    component.call("crs_init", params=prm)
    t0 = time.monotonic()
    with SnapshotWriter(target, fsync=prm.get_bool("crs_base_fsync")) as writer:
        standard_meta(writer.meta, component.name, pid, writer.final)
        component.call("crs_checkpoint", target=outside, snapshot=writer, options=options)
        # read after the dump, which checked the process; with --term it is stopped, not gone
        writer.meta.add("Executable", os.readlink(f"/proc/{pid}/exe"))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0")[:-1]]
        writer.meta.add("Command", argv)
        writer.meta.add("CWD", os.readlink(f"/proc/{pid}/cwd"))
        path = writer.commit()
    if options.term:
        os.kill(pid, signal.SIGKILL)
    if verbose:
        frozen = next((v for k, v in writer.meta.records if k.endswith("Frozen Seconds")), None)
        wrote = next((v for k, v in writer.meta.records if k.endswith("Write Seconds")), None)
        detail = [f"frozen {float(frozen):.3f} s"] if frozen else []
        detail += [f"image written in {float(wrote):.3f} s"] if wrote else []
        print(f"{TOOL}: saved process {pid} with {component.name} in "
              f"{time.monotonic() - t0:.3f} s" + (f" ({', '.join(detail)})" if detail else ""),
              file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> None:
    run_tool(TOOL, lambda: _run(argv))
