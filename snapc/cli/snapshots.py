"""``pycrs-snapshots list|verify|prune``: the snapshots in a directory, whether one is intact,
and removing the ones no longer wanted (snapc.housekeeping)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from crs import params
from crs.cli.errors import ToolParser, UsageError, run_tool

# The snapshot code is imported where it is used, after the arguments are parsed: --help and a
# usage mistake are answered without loading it.

TOOL = "pycrs-snapshots"


def build_parser() -> ToolParser:
    p = ToolParser(prog=TOOL, description="List, verify and prune global snapshots "
                   "(ompi_global_snapshot_<JOBID>.ckpt) and local ones (opal_snapshot_<PID>.ckpt).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=ToolParser)
    where = ("directory to look in (default: snapc_base_global_snapshot_dir, and "
             "crs_base_snapshot_dir when it differs)")
    ls = sub.add_parser("list", help="list the snapshots in a directory, checked",
                        description="One line per snapshot: its sequences, component, number of "
                        "processes, size on disk, age and state: complete (metadata and every "
                        "file's size checked), verified (every byte checked, --deep), damaged "
                        "(with the reason) or not checked (--no-check).")
    params.add_arguments(ls)
    check = ls.add_mutually_exclusive_group()
    check.add_argument("--deep", action="store_true",
                       help="check every byte against its checksums, as a restart does")
    check.add_argument("--no-check", action="store_true", help="read the metadata only")
    ls.add_argument("directory", nargs="?", metavar="DIR", help=where)
    ver = sub.add_parser("verify", help="verify one snapshot: exit 0 if it is intact",
                         description="Check every byte of a snapshot against its checksums (a "
                         "global one: every finished sequence, or --seq N), as a restart does; "
                         "exit 0 if it is intact, 1 with the first fault if not.")
    params.add_arguments(ver)
    ver.add_argument("-s", "--seq", type=int, metavar="N", help="only sequence N")
    ver.add_argument("--fast", action="store_true",
                     help="check the metadata and every file's size only")
    ver.add_argument("snapshot", metavar="SNAPSHOT", help="a snapshot directory (a path, or a "
                     "name in snapc_base_global_snapshot_dir or crs_base_snapshot_dir)")
    pr = sub.add_parser("prune", help="remove old sequences and snapshots, and what dead jobs "
                        "left behind",
                        description="Remove the sequences of global snapshots beyond the newest "
                        "N (--keep) and/or older than an age (--older-than; local snapshots too, "
                        "and a global snapshot whole when none of its sequences is newer). A "
                        "sequence a running job restarted from, and a snapshot a running job or "
                        "process writes into, are kept. Partial snapshots and control sockets of "
                        "processes that are gone are removed as well.")
    params.add_arguments(pr)
    pr.add_argument("--keep", type=int, metavar="N",
                    help="keep the newest N sequences of each global snapshot (N >= 1)")
    pr.add_argument("--older-than", metavar="AGE",
                    help="remove what is older than AGE: 90s, 30m, 12h, 3d, 2w")
    pr.add_argument("-n", "--dry-run", action="store_true",
                    help="say what would be removed, remove nothing")
    pr.add_argument("directory", nargs="?", metavar="DIR", help=where)
    return p


def directories(given: str | None, prm: params.Params) -> list[Path]:
    """The directories to look in: the one given, else those of the default ones that exist
    (a missing default holds no snapshot yet)."""
    if given is not None:
        return [Path(given).expanduser().absolute()]
    dirs = [prm.get_path("snapc_base_global_snapshot_dir").absolute(),
            prm.get_path("crs_base_snapshot_dir").absolute()]
    return [d for i, d in enumerate(dirs) if d not in dirs[:i] and d.is_dir()]


def find(name: str, prm: params.Params) -> Path:
    """A path as given, else the name looked up in the default directories."""
    given = Path(name).expanduser()
    if given.exists() or given.is_absolute():
        return given.absolute()
    for d in directories(None, prm):
        if (d / name).exists():
            return d / name
    return given.absolute()


def _list(ns, prm: params.Params) -> int:  # type: ignore[no-untyped-def]
    from .. import housekeeping as hk

    now = time.time()
    dirs = directories(ns.directory, prm)
    found = [f for d in dirs for f in hk.scan(d)]
    if not found:
        print(f"no snapshots in {', '.join(map(str, dirs)) or 'the default directories'}")
        return 0
    for f in found:
        if not ns.no_check:
            hk.check(f, ns.deep)
    table = [["NAME", "KIND", "SEQ", "COMPONENT", "NP", "SIZE", "AGE", "STATE"],
             *hk.rows(found, now)]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
              + "  " + row[-1])
    return 0


def _verify(ns, prm: params.Params) -> int:  # type: ignore[no-untyped-def]
    from .. import housekeeping as hk

    path = find(ns.snapshot, prm)
    seqs = hk.verify(path, deep=not ns.fast, seq=ns.seq)
    how = "complete (metadata and file sizes)" if ns.fast else "verified"
    which = f" (sequence{'s' if len(seqs) > 1 else ''} {hk.seq_list(seqs)})" if seqs else ""
    print(f"{path}: {how}{which}")
    return 0


def _prune(ns, prm: params.Params) -> int:  # type: ignore[no-untyped-def]
    from crs.snapshot import SnapshotError

    from .. import housekeeping as hk

    if ns.keep is not None and ns.keep < 1:
        raise UsageError(f"--keep {ns.keep}: keep at least 1 sequence (to remove whole "
                         "snapshots, use --older-than)")
    older = None
    if ns.older_than is not None:
        try:
            older = hk.parse_age(ns.older_than)
        except ValueError as exc:
            raise UsageError(f"--older-than: {exc}") from None
    dirs = directories(ns.directory, prm)
    users, now = hk.Users.now(), time.time()
    plans = [hk.plan(d, ns.keep, older, users, now) for d in dirs]  # all found before acting
    plans.append((hk.stale_socket_steps(), [], []))
    verb = "would remove" if ns.dry_run else "removed"
    problems = []
    for steps, notes, trouble in plans:
        for step in steps:
            if not ns.dry_run:
                try:
                    hk.carry_out(step)
                except (OSError, SnapshotError) as exc:  # the next steps are tried all the same
                    problems.append(f"{step.path}: not removed: {hk.reason(exc)}")
                    continue
            print(f"{verb} {step.what}")
        for note in notes:
            print(note)
        problems += trouble
    if not any(steps for steps, _, _ in plans):
        print("nothing to remove")
    for problem in problems:
        print(f"{TOOL}: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _run(argv: list[str] | None) -> int:
    ns = build_parser().parse_args(argv)
    prm = params.from_arguments(ns)
    prm.validate()
    return {"list": _list, "verify": _verify, "prune": _prune}[ns.command](ns, prm)


def main(argv: list[str] | None = None) -> None:
    run_tool(TOOL, lambda: _run(argv))
