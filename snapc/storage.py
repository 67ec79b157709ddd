"""Global snapshots on disk, in Open MPI's layout, with integrity added.

::

    <snapc_base_global_snapshot_dir>/ompi_global_snapshot_<JOBID>.ckpt/
        global_snapshot_meta.data     # job records, then one block per finished sequence
        0/opal_snapshot_0.ckpt/ ...   # one local snapshot per rank
        1/...

A sequence is written in ``.<seq>.partial-*`` beside its final name: each rank commits its local
snapshot there; when all ranks have succeeded the coordinator fsyncs the directory, renames it to
``<seq>`` and rewrites the metadata (aside, fsynced, renamed) with a new ``Finished Seq`` record,
which is the commit. Whatever happens before that rename of the metadata, the previous finished
sequence stays restartable; directories without a ``Finished Seq`` record are never used.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crs import native
from crs.snapshot import (
    PARTIAL,
    LocalSnapshot,
    Meta,
    SnapshotError,
    aside_name,
    fsync_dir,
    local_snapshot_name,
    remove_stale_partials,
)

if TYPE_CHECKING:
    from crs.progress import Meter

META_FILE = "global_snapshot_meta.data"


#: the mark of a sequence directory withdrawn before it is deleted (see crs.snapshot.aside_name)
ABORTED = ".aborted-"

#: the metadata record of a finished sequence removed since (snapc_base_keep)
REMOVED = "Removed Seq"


@contextmanager
def metadata_lock(path: Path) -> Iterator[None]:
    """Exclusive use of the global snapshot directory ``path``'s metadata (an flock on the
    directory itself), between its writers."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def global_snapshot_name(jobid: int) -> str:
    return f"ompi_global_snapshot_{jobid}.ckpt"


@dataclass(frozen=True)
class SeqRecord:
    """One finished sequence as recorded in the metadata."""

    seq: int
    timestamp: str
    component: str
    nprocs: int


class GlobalSnapshot:
    """A global snapshot directory: its job records and its finished sequences."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()
        if not self.path.is_dir():
            if self.path.exists():
                raise SnapshotError(f"{self.path}: not a global snapshot directory")
            raise SnapshotError(f"{self.path}: no such global snapshot")
        if not (self.path / META_FILE).exists():
            raise SnapshotError(f"{self.path}: not a global snapshot (no {META_FILE})")
        self.meta = Meta.read(self.path / META_FILE)
        self.seqs: dict[int, SeqRecord] = {}
        #: finished sequences removed since (snapc_base_keep)
        self.removed: set[int] = set()
        current: dict[str, str] = {}
        for key, value in self.meta.records:
            if key == REMOVED:
                try:
                    self.removed.add(int(value))
                except ValueError:
                    raise SnapshotError(f"{self.path / META_FILE}: malformed {REMOVED} record "
                                        f"{value!r}") from None
            elif key == "Seq":
                current = {"Seq": value}
            elif key == "Finished Seq":
                try:
                    seq = int(value)
                    self.seqs[seq] = SeqRecord(seq, current.get("Timestamp", ""),
                                               current.get("OPAL CRS Component", ""),
                                               int(current.get("NP", "0")))
                except ValueError:
                    raise SnapshotError(f"{self.path / META_FILE}: malformed Finished Seq "
                                        f"record {value!r}") from None
            elif current:
                current[key] = value
        for seq in self.removed:
            self.seqs.pop(seq, None)

    @property
    def finished(self) -> list[int]:
        return sorted(self.seqs)

    def newest(self) -> int:
        if not self.seqs:
            raise SnapshotError(f"{self.path}: no finished sequence to restart from")
        return max(self.seqs)

    def seq_dir(self, seq: int) -> Path:
        return self.path / str(seq)

    def rank_snapshot(self, seq: int, rank: int) -> Path:
        return self.seq_dir(seq) / local_snapshot_name(rank)

    def check_seq(self, seq: int) -> SeqRecord:
        """The record of ``seq``, or SnapshotError if it never finished."""
        if seq not in self.seqs:
            have = ", ".join(map(str, self.finished)) or "none"
            if seq in self.removed:
                raise SnapshotError(f"{self.path}: sequence {seq} was removed to keep only the "
                                    f"newest ones (snapc_base_keep; finished sequences: {have})")
            state = "exists but never finished" if self.seq_dir(seq).exists() else "does not exist"
            raise SnapshotError(f"{self.path}: sequence {seq} {state} (finished sequences: {have})")
        return self.seqs[seq]

    def verify(self, seq: int, deep: bool = True, meter: Meter | None = None
               ) -> list[LocalSnapshot]:
        """Verify every rank's local snapshot of ``seq`` in full, images included (their pages'
        CRCs: see LocalSnapshot.verify); return them in rank order. Not ``deep``: the fast
        check only (LocalSnapshot.check_sizes). ``meter`` counts the bytes checked."""
        record = self.check_seq(seq)
        if record.nprocs <= 0:
            raise SnapshotError(f"{self.path / META_FILE}: sequence {seq} has no NP record")
        if not self.seq_dir(seq).is_dir():
            raise SnapshotError(f"{self.seq_dir(seq)}: no such sequence directory (sequence "
                                f"{seq} is recorded as finished)")
        paths = [self.rank_snapshot(seq, r) for r in range(record.nprocs)]
        snaps = [LocalSnapshot(p) for p in paths]
        with ThreadPoolExecutor(max_workers=min(8, len(snaps))) as pool:
            check = (lambda snap: snap.verify(True, meter)) if deep else LocalSnapshot.check_sizes
            list(pool.map(check, snaps))  # raises the first failure
        return snaps

    def newest_verified(self) -> tuple[int, list[LocalSnapshot], list[str]]:
        """The newest finished sequence that verifies, its local snapshots, and why each newer
        one did not ("sequence 3 does not verify: ..."), newest first. SnapshotError if there is
        no finished sequence, or none verifies (with every reason)."""
        skipped: list[str] = []
        for seq in reversed(self.finished or [self.newest()]):  # newest(): no sequence at all
            try:
                return seq, self.verify(seq), skipped
            except SnapshotError as exc:
                skipped.append(f"sequence {seq} does not verify: {exc}")
        raise SnapshotError(f"{self.path}: no finished sequence verifies ({'; '.join(skipped)})")

    def job(self, key: str) -> str | None:
        """A job-level record (written before any Seq block)."""
        for k, v in self.meta.records:
            if k == "Seq":
                return None
            if k == key:
                return v
        return None


def remove_sequences(path: Path, seqs: list[int], fsync: bool = True) -> None:
    """Remove finished sequences of the global snapshot at ``path`` from outside its job (the
    job may be running: its coordinator keeps what is recorded here, see
    GlobalSnapshotWriter._write_meta). Recorded as removed first, then deleted."""
    if not seqs:
        return
    with metadata_lock(path):
        meta = Meta.read(path / META_FILE)
        for seq in seqs:
            meta.add(REMOVED, str(seq))
        _replace_meta(path, meta, fsync)
    _withdraw(path, seqs)


def _replace_meta(path: Path, meta: Meta, fsync: bool) -> None:
    """Write ``meta`` aside, fsynced, and rename it over the metadata (under metadata_lock)."""
    tmp = path / f".{META_FILE}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    meta.write(tmp, fsync)
    os.replace(tmp, path / META_FILE)
    if fsync:
        fsync_dir(path)


def _withdraw(path: Path, seqs: list[int]) -> None:
    """Rename the directories of ``seqs`` aside (a reader sees them gone at once) and delete
    them."""
    for seq in seqs:
        gone = path / aside_name(str(seq), ABORTED)
        try:
            os.rename(path / str(seq), gone)
        except FileNotFoundError:
            continue
        shutil.rmtree(gone, ignore_errors=True)


class GlobalSnapshotWriter:
    """Owned by the global coordinator: creates the directory and commits sequences."""

    def __init__(self, path: Path, job_records: list[tuple[str, str]], fsync: bool = True) -> None:
        self.path = Path(path).absolute()
        self.fsync = fsync
        self.path.mkdir(parents=True, exist_ok=True)
        meta_path = self.path / META_FILE
        if meta_path.exists():
            self.meta = Meta.read(meta_path)  # a restarted job continues the same history
        else:
            self.meta = Meta(list(job_records))
            self._write_meta()
        self._clean_partials()

    def next_seq(self) -> int:
        used = [int(v) for k, v in self.meta.records if k in ("Seq", "Finished Seq")]
        used += [int(p.name) for p in self.path.iterdir() if p.name.isdigit()]
        return max(used, default=-1) + 1

    def begin(self, seq: int) -> Path:
        """A fresh partial directory for ``seq``, where ranks write their local snapshots."""
        self._clean_partials()
        partial = self.path / aside_name(str(seq))
        partial.mkdir()
        return partial

    def commit(self, seq: int, partial: Path, component: str, nprocs: int,
               extra: list[tuple[str, str]] = ()) -> Path:  # type: ignore[assignment]
        """Make ``seq`` visible and record it as finished; every rank must have committed."""
        for rank in range(nprocs):
            LocalSnapshot(partial / local_snapshot_name(rank))  # present, metadata intact
        if self.fsync:
            fsync_dir(partial)
        final = self.seq_dir(seq)
        native.rename_noreplace(partial, final)
        if self.fsync:
            fsync_dir(self.path)
        self.meta.add("Seq", str(seq))
        self.meta.add("Timestamp", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
        self.meta.add("OPAL CRS Component", component)
        self.meta.add("NP", str(nprocs))
        for rank in range(nprocs):
            self.meta.add("Process", f"{rank} {local_snapshot_name(rank)}")
        self.meta.add("Snapshot Location", str(final))
        for key, value in extra:
            self.meta.add(key, value)
        self.meta.add("Finished Seq", str(seq))
        self._write_meta()
        return final

    def abort(self, partial: Path) -> None:
        """Withdraw a partial sequence. It is renamed first, so that a rank still writing into
        it fails instead of recreating it, then removed."""
        withdrawn = partial.with_name(partial.name.replace(PARTIAL, ABORTED, 1))
        try:
            os.rename(partial, withdrawn)
        except OSError:
            withdrawn = partial
        shutil.rmtree(withdrawn, ignore_errors=True)

    def prune(self, keep: int, protect: set[int]) -> list[int]:
        """Remove the finished sequences older than the newest ``keep`` (none of ``protect``);
        return them (see remove)."""
        current = GlobalSnapshot(self.path)
        old = [s for s in current.finished[:-keep] if s not in protect] if keep > 0 else []
        self.remove(old)
        return old

    def remove(self, seqs: list[int]) -> None:
        """Remove finished sequences: each is first recorded as removed (so no restart picks
        it), then its directory is withdrawn and deleted."""
        if seqs:
            for seq in seqs:
                self.meta.add(REMOVED, str(seq))
            self._write_meta()
            _withdraw(self.path, seqs)

    def remove_if_unused(self) -> bool:
        """Remove the directory if it holds no sequence, only its metadata (a job's first
        checkpoint failed or was refused): nothing is left behind. True if removed."""
        if any(k == "Seq" for k, _ in self.meta.records):
            return False
        if any(p.name != META_FILE for p in self.path.iterdir()):
            return False
        (self.path / META_FILE).unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            return False
        return True

    def seq_dir(self, seq: int) -> Path:
        return self.path / str(seq)

    def _write_meta(self) -> None:
        """Replace the metadata. ``pycrs-snapshots prune`` may have recorded sequences as
        removed meanwhile: under the directory's lock, those records are kept."""
        with metadata_lock(self.path):
            try:
                on_disk = Meta.read(self.path / META_FILE).records
            except SnapshotError:
                on_disk = []  # none yet, or damaged: ours replaces it
            ours = set(self.meta.records)
            for key, value in on_disk:
                if key == REMOVED and (key, value) not in ours:
                    self.meta.add(key, value)
            _replace_meta(self.path, self.meta, self.fsync)

    def _clean_partials(self) -> None:
        """Remove withdrawn sequences, and partial ones whose coordinator died."""
        for p in self.path.glob(f".*{ABORTED}*"):
            shutil.rmtree(p, ignore_errors=True)
        remove_stale_partials(self.path)
