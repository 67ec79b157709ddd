"""Snapshot housekeeping: what is in a snapshot directory, whether it is intact, and removing
what is no longer wanted (``pycrs-snapshots``).

A directory holds global snapshots (``ompi_global_snapshot_<JOBID>.ckpt``, one per job, with
its sequences) and local ones (``opal_snapshot_<PID>.ckpt``, one per process saved by
``opal-checkpoint``). Sequences are removed the way ``snapc_base_keep`` removes them: recorded
as removed in the metadata first (so no restart picks one), then deleted. A sequence a running
job restarted from is never removed, nor a snapshot a running job or process writes into; the
leftovers of dead writers (partial directories, control sockets) go.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crs import endpoint
from crs.snapshot import PARTIAL, LocalSnapshot, SnapshotError, aside_name, stale_partials

from .storage import ABORTED, META_FILE, GlobalSnapshot, remove_sequences

#: the mark of a snapshot directory that prune withdrew before deleting it
REMOVED_MARK = ".removed-"

GLOBAL = re.compile(r"ompi_global_snapshot_(\d+)\.ckpt")
LOCAL = re.compile(r"opal_snapshot_(\d+)\.ckpt")


@dataclass
class Found:
    """One snapshot in a directory, as listed."""

    path: Path
    kind: str  # global | local
    seqs: list[int] = field(default_factory=list)
    component: str = ""
    nprocs: int = 0
    size: int = 0
    mtime: float = 0.0
    #: "verified" | "complete" (the fast check) | "not checked" | "damaged: <why>" |
    #: "unreadable: <why>" (damaged: the snapshot is at fault; unreadable: we may not read it)
    state: str = "not checked"
    #: when each finished sequence was written (global snapshots)
    seq_mtimes: dict[int, float] = field(default_factory=dict)
    owner: int = 0  # the JOBID or PID in its name

    @property
    def damaged(self) -> bool:
        """Whether its metadata could not be used (the snapshot is left alone)."""
        return self.state.startswith(("damaged", "unreadable"))


def disk_usage(path: Path) -> int:
    """Bytes ``path`` takes on disk (allocated blocks), everything under it included."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    try:
        total += os.lstat(path).st_blocks * 512
    except OSError:
        pass
    return total


def kind_of(path: Path) -> str:
    """``global`` or ``local``; SnapshotError if ``path`` is neither."""
    if not path.exists():
        raise SnapshotError(f"{path}: no such snapshot")
    if not path.is_dir():
        raise SnapshotError(f"{path}: not a snapshot directory")
    if (path / META_FILE).exists():
        return "global"
    if (path / "snapshot_meta.data").exists():
        return "local"
    raise SnapshotError(f"{path}: not a snapshot (no {META_FILE} or snapshot_meta.data)")


def describe(path: Path) -> Found:
    """What the snapshot at ``path`` holds, from its metadata (unchecked); a snapshot whose
    metadata cannot be read is returned damaged, with the reason."""
    path = path.absolute()
    kind = kind_of(path)
    m = (GLOBAL if kind == "global" else LOCAL).fullmatch(path.name)
    found = Found(path, kind, size=disk_usage(path), mtime=_mtime(path),
                  owner=int(m.group(1)) if m else 0)
    try:
        if kind == "global":
            gs = GlobalSnapshot(path)
            found.seqs = gs.finished
            records = [gs.seqs[s] for s in found.seqs]
            found.component = ",".join(sorted({r.component for r in records if r.component}))
            found.nprocs = records[-1].nprocs if records else 0
            found.seq_mtimes = {s: _mtime(gs.seq_dir(s)) for s in found.seqs}
            if found.seq_mtimes:
                found.mtime = max(found.seq_mtimes.values())
        else:
            found.component = LocalSnapshot(path).component
            found.nprocs = 1
    except SnapshotError as exc:
        found.state = f"damaged: {exc}"
    except OSError as exc:
        found.state = f"unreadable: {reason(exc)}"
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def scan(directory: Path) -> list[Found]:
    """Every snapshot directly in ``directory``, global ones first, each by name."""
    if not directory.exists():
        raise SnapshotError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise SnapshotError(f"{directory}: not a directory")
    found = []
    for entry in sorted(directory.iterdir(), key=lambda p: (not GLOBAL.fullmatch(p.name),
                                                           p.name)):
        if (GLOBAL.fullmatch(entry.name) or LOCAL.fullmatch(entry.name)) and entry.is_dir():
            try:
                found.append(describe(entry))
            except (SnapshotError, OSError) as exc:  # no metadata file, or not ours to read
                found.append(Found(entry.absolute(), "global" if GLOBAL.fullmatch(entry.name)
                                   else "local", state=f"damaged: {reason(exc)}"))
    return found


def check(found: Found, deep: bool) -> None:
    """Set ``found.state``: the fast check (metadata and file sizes) or, ``deep``, every byte
    against its checksums, as a restart would."""
    if found.damaged:
        return
    try:
        verify(found.path, deep)
    except SnapshotError as exc:
        found.state = f"damaged: {exc}"
    except OSError as exc:  # not ours to read, say: nothing is known to be wrong with it
        found.state = f"unreadable: {reason(exc)}"
    else:
        found.state = "verified" if deep else "complete"


def verify(path: Path, deep: bool = True, seq: int | None = None) -> list[int]:
    """Check the snapshot at ``path`` (a global one: every finished sequence, or ``seq``);
    return the sequences checked. SnapshotError names the first fault."""
    if kind_of(path) == "local":
        snap = LocalSnapshot(path)
        if deep:
            snap.verify(deep=True)
        else:
            snap.check_sizes()
        return []
    gs = GlobalSnapshot(path)
    seqs = gs.finished if seq is None else [gs.check_seq(seq).seq]
    if not seqs:
        raise SnapshotError(f"{gs.path}: no finished sequence")
    for s in seqs:
        gs.verify(s, deep)
    return seqs


def reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


# -- pruning -----------------------------------------------------------------------------------
@dataclass
class Users:
    """The running jobs of this user on this node, by global snapshot directory: their JOBIDs
    and the sequences they restarted from."""

    jobs: dict[Path, list[tuple[int, int | None]]]

    @classmethod
    def now(cls) -> Users:
        from .coordinator import running_jobs

        jobs: dict[Path, list[tuple[int, int | None]]] = {}
        for jobid, info in running_jobs():
            where = Path(info.get("snapshot_dir") or "/").resolve()
            jobs.setdefault(where, []).append((jobid, info.get("restarted_from")))
        return cls(jobs)

    def of(self, found: Found) -> list[tuple[int, int | None]]:
        return self.jobs.get(found.path.resolve(), [])


@dataclass
class Step:
    """One thing prune does (or, with --dry-run, would do)."""

    what: str  # a line for the user, after "removed"/"would remove"
    path: Path
    seqs: list[int] = field(default_factory=list)  # sequences of a global snapshot
    whole: bool = False  # the whole snapshot (or leftover) directory
    socket: bool = False


def plan(directory: Path, keep: int | None, older_than: float | None, users: Users,
         now: float) -> tuple[list[Step], list[str], list[str]]:
    """What pruning ``directory`` does: the steps, the notes on what is kept although the
    criteria name it (in use), and the problems (damaged snapshots, left alone)."""
    steps: list[Step] = []
    notes: list[str] = []
    problems: list[str] = []

    def old(mtime: float) -> bool:
        return older_than is not None and now - mtime > older_than

    for found in scan(directory):
        if found.damaged:
            problems.append(f"{found.path.name}: {found.state}; left as it is")
            continue
        if found.kind == "local":
            if older_than is None or not old(found.mtime):
                continue
            if Path(f"/proc/{found.owner}").exists():
                notes.append(f"kept {found.path.name}: process {found.owner} is running and may "
                             "checkpoint into it again")
                continue
            steps.append(Step(f"{found.path} ({age(now - found.mtime)} old)", found.path,
                              whole=True))
            continue
        jobs = users.of(found)
        removable = list(found.seqs)
        if keep is not None:
            removable = removable[:-keep] if keep < len(removable) else []
        if older_than is not None:
            removable = [s for s in removable if old(found.seq_mtimes[s])]
        if keep is None and older_than is None:
            removable = []
        for jobid, restarted_from in jobs:
            if restarted_from in removable:
                removable.remove(restarted_from)
                notes.append(f"kept sequence {restarted_from} of {found.path.name}: job {jobid} "
                             "restarted from it and is running")
        everything = removable == found.seqs and (found.seqs or old(found.mtime))
        if everything and not jobs and not _live_partials(found.path):
            steps.append(Step(f"{found.path} (nothing newer than {age(older_than or 0)})",
                              found.path, list(found.seqs), whole=True))
            continue
        if removable:
            left = [s for s in found.seqs if s not in removable]
            steps.append(Step(f"sequence{'s' if len(removable) > 1 else ''} "
                              f"{seq_list(removable)} of {found.path} "
                              f"(kept {seq_list(left) or 'none'})", found.path, removable))
        steps += leftovers(found.path)
    steps += leftovers(directory)
    return steps, notes, problems


def stale_socket_steps() -> list[Step]:
    """Removing the control sockets of processes that are gone (endpoint.stale_sockets)."""
    return [Step(f"{p} (control socket of a process that is gone)", p, socket=True)
            for p in endpoint.stale_sockets()]


def leftovers(directory: Path) -> list[Step]:
    """Removing the partial and withdrawn directories in ``directory`` whose writer is gone."""
    return [Step(f"{p} (left by a writer that is gone)", p, whole=True)
            for p in stale_partials(directory, markers=(PARTIAL, ABORTED, REMOVED_MARK))]


def _live_partials(path: Path) -> bool:
    """Whether a live writer has a partial sequence in the global snapshot at ``path``."""
    partial = [p for p in path.iterdir() if PARTIAL in p.name]
    return len(partial) > len(stale_partials(path))


def carry_out(step: Step) -> None:
    """Do one step of plan(). A whole directory is renamed aside in one step, then deleted: no
    reader finds it half deleted, and if it cannot be renamed nothing has changed. Sequences are
    recorded as removed before they are deleted."""
    if step.socket:
        step.path.unlink(missing_ok=True)
    elif step.whole:
        aside = step.path.with_name(aside_name(step.path.name, REMOVED_MARK))
        try:
            os.rename(step.path, aside)
        except FileNotFoundError:
            return
        shutil.rmtree(aside, ignore_errors=True)
    else:
        remove_sequences(step.path, step.seqs)


# -- words -------------------------------------------------------------------------------------
def age(seconds: float) -> str:
    """``45s``, ``12m``, ``3h``, ``2d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``3d``, ``12h``, ``30m``, ``90s``, ``2w`` (a bare number is seconds) as seconds;
    ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not an age such as 3d, 12h, 30m or 90s")
    return float(m.group(1)) * AGE_UNITS[m.group(2) or "s"]


def size(n: int) -> str:
    """Bytes in binary units: ``512 B``, ``3.1 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # not reached


def seq_list(seqs: list[int]) -> str:
    """``0-2,5``: runs of consecutive sequences shortened."""
    runs: list[list[int]] = []
    for s in sorted(seqs):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)



def rows(found: list[Found], now: float) -> Iterator[list[Any]]:
    """The table pycrs-snapshots list prints, one row per snapshot."""
    for f in found:
        yield [f.path.name, f.kind, seq_list(f.seqs) or "-",
               f.component or "-", str(f.nprocs or "-"), size(f.size),
               age(now - f.mtime) if f.mtime else "-", f.state]
