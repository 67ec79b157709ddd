"""Local snapshots: ``opal_snapshot_<id>.ckpt/`` with ``snapshot_meta.data`` and component files.

A snapshot is written into a hidden directory beside its final name, every file checksummed as it
is written, then fsynced and renamed into place in one step, so readers see either the previous
snapshot or the complete new one and never a mixture. Reading verifies sizes and checksums and
names the file at fault.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import xxhash

from . import native

if TYPE_CHECKING:
    from .progress import Meter

META_FILE = "snapshot_meta.data"
CHECKSUM = "xxh3_128"
# Metadata is UTF-8 split on "\n" only, so any path the OS allows (other line breaks, bytes that
# are not UTF-8) survives the round trip exactly.
_ENC = ("utf-8", "surrogateescape")
_CHUNK = 8 << 20  # hash and write in pieces that still sit in the cache after hashing


class SnapshotError(Exception):
    """A snapshot is missing, incomplete or damaged; the message names the path at fault."""


def local_snapshot_name(ident: int) -> str:
    """The directory name Open MPI used for a process's local snapshot."""
    return f"opal_snapshot_{ident}.ckpt"


#: the mark of a directory being written beside its final name (see aside_name)
PARTIAL = ".partial-"


def aside_name(final_name: str, marker: str = PARTIAL) -> str:
    """``.<final_name><marker><pid>-<ns>-<host>``: a directory this process writes (or, with
    another marker, withdraws) beside its final name; stale_partials knows its writer by it."""
    return f".{final_name}{marker}{os.getpid()}-{time.time_ns()}-{socket.gethostname()}"


def stale_partials(directory: Path, prefix: str = ".",
                   markers: tuple[str, ...] = (PARTIAL,)) -> list[Path]:
    """The directories named by aside_name in ``directory`` (starting with ``prefix``) whose
    writer is gone: what a writer killed mid-snapshot left behind. A live writer's is never one,
    nor one written on another host (a file system that nodes share), which is not ours to judge;
    names without a host (older ones) are judged here."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    stale = []
    for entry in entries:
        name = entry.name
        marker = next((m for m in markers if m in name), None)
        if not name.startswith(prefix) or marker is None:
            continue
        pid, _, rest = name.split(marker, 1)[1].partition("-")
        host = rest.partition("-")[2]
        if host and host != socket.gethostname():
            continue
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.append(entry)
    return stale


def remove_stale_partials(directory: Path, prefix: str = ".") -> None:
    """Remove stale_partials()."""
    for entry in stale_partials(directory, prefix):
        shutil.rmtree(entry, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- metadata ----------------------------------------------------------------------------------
class Meta:
    """Ordered ``# Key: value`` records; a key may repeat (``File`` does)."""

    def __init__(self, records: list[tuple[str, str]] | None = None) -> None:
        self.records: list[tuple[str, str]] = list(records or [])

    def add(self, key: str, value: object) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        if "\n" in text:
            raise ValueError(f"metadata value for {key!r} contains a newline")
        if "\n" in key or ": " in key:
            raise ValueError(f"invalid metadata key {key!r}")
        self.records.append((key, text))

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.records:
            if k == key:
                return v
        return default

    def get_json(self, key: str, default: object = None) -> object:
        v = self.get(key)
        return default if v is None else json.loads(v)

    def get_all(self, key: str) -> list[str]:
        return [v for k, v in self.records if k == key]

    def render(self) -> str:
        body = "".join(f"# {k}: {v}\n" for k, v in self.records)
        digest = xxhash.xxh3_128_hexdigest(body.encode(*_ENC))
        return body + f"# Meta Checksum: {CHECKSUM}:{digest}\n"

    @classmethod
    def parse(cls, text: str, where: Path) -> Meta:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        if not lines or not lines[-1].startswith("# Meta Checksum: "):
            raise SnapshotError(f"{where}: metadata is truncated (no checksum line)")
        body = "".join(line + "\n" for line in lines[:-1])
        want = lines[-1].split(":", 1)[1].strip()
        if want != f"{CHECKSUM}:{xxhash.xxh3_128_hexdigest(body.encode(*_ENC))}":
            raise SnapshotError(f"{where}: metadata is corrupted (checksum mismatch)")
        records = []
        for line in lines[:-1]:
            key, sep, value = line[2:].partition(": ")
            if not line.startswith("# ") or not sep:
                raise SnapshotError(f"{where}: malformed metadata line {line.strip()!r}")
            records.append((key, value))
        return cls(records)

    @classmethod
    def read(cls, path: Path) -> Meta:
        try:
            text = path.read_bytes().decode(*_ENC)
        except FileNotFoundError:
            raise SnapshotError(f"{path}: metadata file is missing") from None
        except IsADirectoryError:
            raise SnapshotError(f"{path}: metadata file is a directory") from None
        return cls.parse(text, path)

    def write(self, path: Path, fsync: bool) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            data = self.render().encode(*_ENC)
            while data:
                data = data[os.write(fd, data):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)


# -- writing -----------------------------------------------------------------------------------
class ChecksummedWriter:
    """An unbuffered file writer that hashes what it writes; write() takes any buffer, no copy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.size = 0
        self._hash = xxhash.xxh3_128()
        self.own_digest: str | None = None

    def write(self, data: object) -> int:
        view = memoryview(data).cast("B")  # type: ignore[arg-type]
        for start in range(0, len(view), _CHUNK):
            chunk = view[start:start + _CHUNK]
            self._hash.update(chunk)
            while chunk:
                n = os.write(self.fd, chunk)
                chunk = chunk[n:]
        self.size += len(view)
        return len(view)

    def pad_to(self, alignment: int) -> None:
        """Write zeros up to the next multiple of ``alignment``."""
        rem = self.size % alignment
        if rem:
            self.write(bytes(alignment - rem))

    def close(self, fsync: bool) -> str:
        try:
            if fsync:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)
        return self.own_digest or f"{CHECKSUM}:{self._hash.hexdigest()}"


class SnapshotWriter:
    """Builds one local snapshot aside and commits it atomically under its final name.

    Use as a context manager: leaving the block with an exception discards the partial snapshot
    and leaves any earlier snapshot of the same name untouched.
    """

    def __init__(self, final: Path, fsync: bool = True, create_parent: bool = True) -> None:
        """``create_parent`` False: the directory must exist already (a coordinator made it and
        may withdraw it; a late writer must then fail rather than bring it back)."""
        self.final = Path(final).absolute()
        self.fsync = fsync
        self.meta = Meta()
        if create_parent:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.final.parent, f".{self.final.name}{PARTIAL}")
        self.aside = self.final.with_name(aside_name(self.final.name))
        self.aside.mkdir()
        self._files: list[ChecksummedWriter] = []
        self._done: list[tuple[str, int, str]] = []

    @property
    def directory(self) -> Path:
        """Where component files go while the snapshot is being written."""
        return self.aside

    def create(self, name: str) -> ChecksummedWriter:
        """A new file in the snapshot; it is checksummed and recorded at commit."""
        if not _valid_file_name(name):
            raise ValueError(f"invalid snapshot file name {name!r}")
        w = ChecksummedWriter(self.aside / name)
        self._files.append(w)
        return w

    def adopt(self, w: ChecksummedWriter, digest: str) -> None:
        """Declare that a component wrote ``w``'s descriptor itself (``w.size`` bytes) and checks
        its content with a scheme of its own, recorded as ``digest``: readers check only its
        size, the component checks the content while it reads it."""
        if digest.startswith(f"{CHECKSUM}:") or not digest or " " in digest:
            raise ValueError(f"invalid digest for a component-checked file: {digest!r}")
        w.own_digest = digest

    def include(self, name: str, digest: str | None = None) -> int:
        """Record a file that another process (a checkpoint kernel inside the saved process)
        wrote into ``directory``: checksummed here, or, with ``digest``, checked by its
        component with a scheme of its own (see ``adopt``). Returns its size."""
        if not _valid_file_name(name):
            raise ValueError(f"invalid snapshot file name {name!r}")
        if digest is not None and (digest.startswith(f"{CHECKSUM}:") or not digest
                                   or " " in digest):
            raise ValueError(f"invalid digest for a component-checked file: {digest!r}")
        path = self.aside / name
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if digest is None:
                h = xxhash.xxh3_128()
                while chunk := os.read(fd, _CHUNK):
                    h.update(chunk)
                digest = f"{CHECKSUM}:{h.hexdigest()}"
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._done.append((name, size, digest))
        return size

    def commit(self) -> Path:
        """Seal every file, write the metadata and move the snapshot into place."""
        for w in self._files:
            digest = w.close(self.fsync)
            self._done.append((w.path.name, w.size, digest))
        self._files.clear()
        for name, size, digest in self._done:
            self.meta.add("File", f"{name} {size} {digest}")
        self.meta.write(self.aside / META_FILE, self.fsync)
        if self.fsync:
            fsync_dir(self.aside)
        if self.final.exists():
            native.rename_exchange(self.aside, self.final)
            shutil.rmtree(self.aside)  # now holds the previous snapshot
        else:
            native.rename_noreplace(self.aside, self.final)
        if self.fsync:
            fsync_dir(self.final.parent)
        return self.final

    def abort(self) -> None:
        """Discard the partial snapshot."""
        for w in self._files:
            try:
                os.close(w.fd)
            except OSError:
                pass
        self._files.clear()
        shutil.rmtree(self.aside, ignore_errors=True)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if exc_type is not None:
            self.abort()


def _valid_file_name(name: str) -> bool:
    """A plain name inside the snapshot directory that a File record can carry."""
    return not (set(name) & {"/", "\n", "\0"}) and name not in ("", ".", "..", META_FILE)


def standard_meta(meta: Meta, component: str, pid: int, final: Path) -> None:
    """The Open MPI keys every local snapshot carries."""
    meta.add("PID", str(pid))
    meta.add("OPAL CRS Component", component)
    meta.add("Snapshot Reference", final.name)
    meta.add("Snapshot Location", str(final.parent))
    meta.add("Timestamp", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    meta.add("Hostname", socket.gethostname())


# -- reading -----------------------------------------------------------------------------------
class ChecksummedReader:
    """Reads one snapshot file and checks its size and checksum once it has been read to the end."""

    def __init__(self, path: Path, size: int, digest: str, meter: Meter | None = None) -> None:
        self.path, self.size, self.digest, self.meter = path, size, digest, meter
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise SnapshotError(f"{path}: snapshot file is missing") from None
        actual = os.fstat(self.fd).st_size
        if actual != size:
            os.close(self.fd)
            what = "truncated" if actual < size else "longer than recorded"
            raise SnapshotError(
                f"{path}: snapshot file is {what} ({actual} bytes, expected {size})")
        self.pos = 0
        self._hash = xxhash.xxh3_128()

    def readinto(self, buf: object) -> None:
        """Fill ``buf`` completely from the file (no intermediate copy)."""
        view = memoryview(buf).cast("B")  # type: ignore[arg-type]
        done = 0
        while done < len(view):
            n = os.readv(self.fd, [view[done:done + _CHUNK]])
            if n == 0:
                raise SnapshotError(f"{self.path}: snapshot file is truncated")
            self._hash.update(view[done:done + n])
            done += n
            if self.meter is not None:
                self.meter.add(n)
        self.pos += done

    def read(self, n: int) -> bytearray:
        buf = bytearray(n)
        self.readinto(buf)
        return buf

    def skip_to(self, offset: int) -> None:
        """Read and discard up to ``offset`` (padding), keeping the checksum running."""
        scratch = bytearray(min(_CHUNK, max(offset - self.pos, 0)))
        while offset > self.pos:
            self.readinto(memoryview(scratch)[: offset - self.pos])

    def finish(self) -> None:
        """Check that the whole file was read and matches its checksum; then close it."""
        if not self.digest.startswith(f"{CHECKSUM}:"):  # checked by its component as it reads
            os.close(self.fd)
            return
        try:
            self.skip_to(self.size)
            got = f"{CHECKSUM}:{self._hash.hexdigest()}"
            if got != self.digest:
                raise SnapshotError(f"{self.path}: snapshot file is corrupted (checksum mismatch)")
        finally:
            os.close(self.fd)


#: the digest of a file its component checks with a CRC-32C per CHUNK bytes, kept in CRCS
_CHUNKED = re.compile(r"crc32c/(?P<chunk>[1-9][0-9]*):(?P<crcs>[^ ]+)")


def check_chunks(fd: int, size: int, crcs: bytes, chunk: int, where: str,
                 meter: Meter | None = None) -> None:
    """Check the file open at ``fd`` against its CRC-32C per ``chunk`` bytes; raise
    SnapshotError naming ``where`` and the first chunk at fault. ``meter`` counts the bytes
    checked."""
    bad = native.verify_chunks(fd, size, crcs, chunk, meter.counter() if meter else None)
    if bad is not None:
        unit = "MiB" if chunk == 1 << 20 else f"chunk of {chunk} bytes"
        raise SnapshotError(f"{where}: snapshot file is corrupted (checksum mismatch in {unit} "
                            f"{bad})")


class LocalSnapshot:
    """A committed local snapshot on disk."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()
        if not self.path.is_dir():
            if self.path.exists():
                raise SnapshotError(f"{self.path}: not a snapshot directory")
            raise SnapshotError(f"{self.path}: no such snapshot")
        self.meta = Meta.read(self.path / META_FILE)
        self.files: dict[str, tuple[int, str]] = {}
        for rec in self.meta.get_all("File"):
            try:
                name, size, digest = rec.rsplit(" ", 2)  # the name may contain spaces
                if not _valid_file_name(name):
                    raise ValueError(name)
                self.files[name] = (int(size), digest)
            except ValueError:
                raise SnapshotError(
                    f"{self.path / META_FILE}: malformed File record {rec!r}") from None

    @property
    def component(self) -> str:
        value = self.meta.get("OPAL CRS Component")
        if not value:
            raise SnapshotError(f"{self.path / META_FILE}: no 'OPAL CRS Component' record")
        return value

    def open(self, name: str, meter: Meter | None = None) -> ChecksummedReader:
        """Open a recorded file for verified reading (``meter`` counts the bytes read)."""
        if name not in self.files:
            raise SnapshotError(f"{self.path}: snapshot has no file {name!r}")
        size, digest = self.files[name]
        return ChecksummedReader(self.path / name, size, digest, meter)

    def verify(self, deep: bool = False, meter: Meter | None = None) -> None:
        """Check every recorded file in full; raise SnapshotError naming the first one at fault.
        A file its component checks itself (see SnapshotWriter.adopt) is checked for size here
        and for content when the component reads it; with ``deep``, its content is checked here
        too when its scheme is the CRC-32C per chunk one (``crc32c/CHUNK:CRCFILE``): before a
        job is relaunched, no rank may be found damaged once the others are running. ``meter``
        counts the bytes checked, for a progress bar."""
        for name in self.files:
            r = self.open(name, meter)
            try:
                scheme = _CHUNKED.fullmatch(r.digest) if deep else None
                if scheme:
                    crcs = self.open(scheme["crcs"], meter) if scheme["crcs"] in self.files \
                        else None
                    if crcs is None:
                        raise SnapshotError(f"{self.path}: snapshot has no file "
                                            f"{scheme['crcs']!r}, the checksums of {name}")
                    table = bytes(crcs.read(crcs.size))
                    crcs.finish()
                    check_chunks(r.fd, r.size, table, int(scheme["chunk"]), str(r.path), meter)
            finally:
                r.finish()

    def check_sizes(self) -> None:
        """The fast check: the metadata is intact (read when this was made) and every recorded
        file is present with its recorded size; SnapshotError names the first one at fault."""
        for name in self.files:
            os.close(self.open(name).fd)

    def iter_files(self) -> Iterator[Path]:
        for name in self.files:
            yield self.path / name
