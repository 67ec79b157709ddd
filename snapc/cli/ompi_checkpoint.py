"""``ompi-checkpoint JOBID``: take a global snapshot of a running C/R job (JOBID = PID of our
mpirun), or list the C/R jobs of this user."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from crs import endpoint, params
from crs.cli.errors import ToolParser, UsageError, run_tool

TOOL = "ompi-checkpoint"
HINT = "start the job with 'mpirun -am ft-enable-cr'"


def build_parser() -> ToolParser:
    p = ToolParser(prog=TOOL, description="Checkpoint a running MPI job started with "
                   "'mpirun -am ft-enable-cr' into a global snapshot, every rank at once.")
    params.add_arguments(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--term", action="store_true", help="end the job after the checkpoint")
    mode.add_argument("--stop", action="store_true",
                      help="stop the ranks after the checkpoint, until SIGCONT reaches mpirun")
    p.add_argument("-s", "--status", action="store_true",
                   help="print status messages as the checkpoint progresses")
    p.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    p.add_argument("--nowait", action="store_true",
                   help="return once the request is accepted, without waiting for the snapshot")
    p.add_argument("-l", "--list", action="store_true",
                   help="list the running checkpoint-enabled jobs of this user")
    p.add_argument("jobid", nargs="?", metavar="JOBID", help="the PID of the job's mpirun")
    return p


def job_of(pid: int) -> int | None:
    """The checkpoint-enabled job of ours that process ``pid`` runs in (a rank, or the real
    launcher under our mpirun): the PID of the nearest ancestor serving a job endpoint."""
    from ..coordinator import job_socket

    try:
        if pid <= 1 or Path(f"/proc/{pid}").stat().st_uid != os.getuid():
            return None
        while pid > 1:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent
            if job_socket(pid).exists():
                return pid
    except (OSError, ValueError, IndexError):
        pass
    return None


def list_jobs() -> int:
    from ..coordinator import running_jobs

    found = False
    for jobid, info in running_jobs():
        if not found:
            print(f"{'JOBID':>8}  {'RANKS':>5}  {'LAST SEQ':>8}  {'STATE':<24}  SNAPSHOT DIRECTORY")
            found = True
        ranks = f"{info['ranks']}/{info['size'] if info['size'] is not None else '?'}"
        last = "-" if info["last_seq"] is None else str(info["last_seq"])
        print(f"{jobid:>8}  {ranks:>5}  {last:>8}  {info['state']:<24}  {info['snapshot_dir']}")
    if not found:
        print("no checkpoint-enabled jobs of this user are running")
    return 0


def _run(argv: list[str] | None) -> int:
    ns = build_parser().parse_args(argv)
    from ..coordinator import job_socket  # after parsing: --help does not load it

    prm = params.from_arguments(ns)
    prm.validate()
    if ns.list:
        return list_jobs()
    if ns.jobid is None:
        raise UsageError("JOBID is required (the PID of the job's mpirun; see --list)")
    try:
        jobid = int(ns.jobid)
    except ValueError:
        raise UsageError(f"JOBID must be a number, not {ns.jobid!r}") from None
    path = job_socket(jobid)
    if not path.exists():  # our mpirun may still be on its way to listening
        from crs import starting

        starting.wait_for(path, jobid, lambda: starting.runs_tool(jobid, "snapc.frontend")
                          or starting.about_to_exec(jobid),
                          prm.get_int("snapc_base_registration_timeout"))
    try:
        sock = endpoint.connect(jobid, "job", path, HINT)
    except endpoint.EndpointError:
        owner = job_of(jobid)
        if owner is None:
            raise
        raise endpoint.EndpointError(
            f"process {jobid} is part of job {owner}, not its mpirun: the JOBID is the PID of "
            f"the job's mpirun (ompi-checkpoint {owner})") from None

    if prm.cli.get("crs") != "self":  # before --term ends the job
        from crs.plugins.image_based import unrestartable_here

        line = unrestartable_here()
        if line:
            print(f"{TOOL}: {line}", file=sys.stderr, flush=True)

    from crs.progress import Bar, summary, tree_bytes

    growing: list[Path] = []  # the sequence being written, once the coordinator names it

    def progress(event: dict) -> None:
        if event.get("dir"):
            growing[:] = [Path(event["dir"])]
        if ns.status or ns.verbose:
            print(f"{TOOL}: {event.get('message') or event['event']}", file=sys.stderr, flush=True)

    with Bar(f"checkpoint of job {jobid}", lambda: tree_bytes(*growing)) as bar:
        reply = endpoint.request(sock, {"op": "checkpoint", "term": ns.term, "stop": ns.stop,
                                        "nowait": ns.nowait, "crs": prm.cli.get("crs")},
                                 progress, what=f"job {jobid}")
    if reply["event"] == "error":
        print(f"{TOOL}: checkpoint of job {jobid} failed: {reply['message']}", file=sys.stderr)
        return 1
    if reply.get("nowait"):
        print(f"Checkpoint of job {jobid} requested")
        return 0
    size = tree_bytes(Path(reply["snapshot"]) / str(reply["seq"]))
    # the reference line as Open MPI prints it (scripts take its last word); the figures apart
    print(f"Snapshot Ref.: {reply['seq']} {reply['snapshot']}", flush=True)
    print(f"{TOOL}: checkpoint of job {jobid}: {summary(size, bar.elapsed)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> None:
    run_tool(TOOL, lambda: _run(argv))
