"""Local snapshots on real files: round trip, verification naming the file at fault, atomic
replacement, and a writer killed with SIGKILL in the middle of a large snapshot."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from crs.snapshot import (
    META_FILE,
    LocalSnapshot,
    Meta,
    SnapshotError,
    SnapshotWriter,
    standard_meta,
)

PY = sys.executable
BIG = 48 << 20  # bytes of numpy data in the round trip


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes."""
    return {str(p.relative_to(path)): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file()}


def partials(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name)


def make(final: Path, tag: str, array: np.ndarray | None = None, fsync: bool = True) -> Path:
    with SnapshotWriter(final, fsync=fsync) as w:
        standard_meta(w.meta, "self", 4242, w.final)
        w.meta.add("Tag", tag)
        w.create("small.txt").write(f"small file of {tag}\n".encode("utf-8", "surrogateescape"))
        w.create("empty")  # an empty file is still recorded
        if array is not None:
            w.create("array.bin").write(array)
        return w.commit()


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    return make(tmp_path / "opal_snapshot_4242.ckpt", "old", np.arange(1 << 16, dtype=np.float64))


# -- round trip ------------------------------------------------------------------------------
@pytest.mark.parametrize("fsync", [True, False])
def test_round_trip(tmp_path: Path, fsync: bool) -> None:
    rng = np.random.default_rng(7)
    array = rng.standard_normal(BIG // 8)
    final = make(tmp_path / "opal_snapshot_1.ckpt", "rt", array, fsync=fsync)
    snap = LocalSnapshot(final)
    assert snap.component == "self"
    assert snap.meta.get("Tag") == "rt" and snap.meta.get("PID") == "4242"
    assert snap.meta.get("Snapshot Reference") == final.name
    assert snap.meta.get("Snapshot Location") == str(tmp_path)
    assert set(snap.files) == {"small.txt", "empty", "array.bin"}
    assert snap.files["array.bin"][0] == array.nbytes
    assert snap.files["empty"][0] == 0
    snap.verify()
    back = np.empty_like(array)
    r = snap.open("array.bin")
    r.readinto(back)
    r.finish()
    assert np.array_equal(back, array)
    r = snap.open("small.txt")
    assert bytes(r.read(r.size)) == b"small file of rt\n"
    r.finish()
    assert sorted(p.name for p in final.iterdir()) == sorted([META_FILE, *snap.files])
    assert partials(tmp_path) == []


def test_partial_reads_and_skip_keep_the_checksum(snap: Path) -> None:
    s = LocalSnapshot(snap)
    r = s.open("array.bin")
    head = np.frombuffer(r.read(80), dtype=np.float64)
    r.skip_to(4096)
    tail = r.read(16)
    r.finish()  # reads the rest and checks the checksum of the whole file
    assert list(head) == list(range(10))
    assert np.frombuffer(tail, dtype=np.float64).tolist() == [512.0, 513.0]


def test_unusual_directory_names(tmp_path: Path) -> None:
    """Any directory a user can create can hold a snapshot: the metadata records the location."""
    for name in ["caf\u00e9 \u2603", "carriage\rreturn", "line\u2028separator", "form\x0cfeed",
                 "next\x85line", os.fsdecode(b"bytes\xff\xfe")]:
        final = make(tmp_path / name / "opal_snapshot_2.ckpt", name)
        s = LocalSnapshot(final)
        s.verify()
        assert s.meta.get("Snapshot Location") == str(tmp_path / name)
        assert s.meta.get("Tag") == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", META_FILE, "new\nline"])
def test_invalid_file_names_refused_up_front(tmp_path: Path, name: str) -> None:
    with SnapshotWriter(tmp_path / "opal_snapshot_3.ckpt") as w:
        with pytest.raises(ValueError):
            w.create(name)
        w.abort()
    assert list(tmp_path.iterdir()) == []


def test_file_name_with_spaces(tmp_path: Path) -> None:
    final = tmp_path / "opal_snapshot_4.ckpt"
    with SnapshotWriter(final) as w:
        w.create("my state file").write(b"x" * 10)
        w.commit()
    s = LocalSnapshot(final)
    s.verify()
    assert s.files["my state file"][0] == 10


# -- damage is found and the file named --------------------------------------------------------
def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "flipped byte": (lambda p: flip(p, p.stat().st_size // 2), "corrupted (checksum mismatch)"),
    "flipped last byte": (lambda p: flip(p, p.stat().st_size - 1), "corrupted (checksum mismatch)"),
    "truncated": (lambda p: os.truncate(p, p.stat().st_size - 1), "truncated"),
    "emptied": (lambda p: os.truncate(p, 0), "truncated"),
    "extended": (lambda p: p.open("ab").write(b"\0"), "longer than recorded"),
    "missing": (lambda p: p.unlink(), "missing"),
    "replaced by a directory": (lambda p: (p.unlink(), p.mkdir()), "snapshot file"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("victim", ["array.bin", "small.txt"])
def test_damaged_file_named(snap: Path, damage: str, victim: str) -> None:
    spoil, words = DAMAGE[damage]
    spoil(snap / victim)
    with pytest.raises(SnapshotError) as ei:
        LocalSnapshot(snap).verify()
    assert str(ei.value).startswith(f"{snap / victim}: ")
    assert words in str(ei.value)


def test_damage_found_when_reading_not_only_by_verify(snap: Path) -> None:
    flip(snap / "array.bin", 100)
    r = LocalSnapshot(snap).open("array.bin")
    r.read(1000)
    with pytest.raises(SnapshotError, match=f"^{re.escape(str(snap / 'array.bin'))}: .*checksum"):
        r.finish()


def _meta(snap: Path) -> Path:
    return snap / META_FILE


META_DAMAGE = {
    "flipped byte": lambda p: flip(p, 20),
    "value edited": lambda p: p.write_text(p.read_text().replace("PID: 4242", "PID: 4243")),
    "truncated mid-way": lambda p: os.truncate(p, p.stat().st_size // 2),
    "checksum line cut": lambda p: os.truncate(p, p.stat().st_size - 5),
    "emptied": lambda p: os.truncate(p, 0),
    "binary garbage appended": lambda p: p.open("ab").write(b"\xff\xfe\x00\x80"),
    "line appended": lambda p: p.open("a").write("# File: extra 1 xxh3_128:00\n"),
    "missing": lambda p: p.unlink(),
}


@pytest.mark.parametrize("damage", list(META_DAMAGE))
def test_damaged_metadata_named(snap: Path, damage: str) -> None:
    META_DAMAGE[damage](_meta(snap))
    with pytest.raises(SnapshotError) as ei:
        LocalSnapshot(snap)
    assert str(ei.value).startswith(f"{_meta(snap)}: ")


@pytest.mark.parametrize("record", ["state.bin 10", "state.bin ten xxh3_128:00", "../outside 1 x",
                                    "/etc/passwd 1 x", "sub/file 1 x"])
def test_bad_file_record_named_even_with_valid_checksum(snap: Path, record: str) -> None:
    """Metadata rewritten with a valid checksum but a File record that cannot be right."""
    meta = Meta.read(_meta(snap))
    meta.add("File", record)
    _meta(snap).write_text(meta.render())
    with pytest.raises(SnapshotError, match=f"^{re.escape(str(_meta(snap)))}: .*File record"):
        LocalSnapshot(snap)


def test_missing_component_record(snap: Path) -> None:
    meta = Meta([r for r in Meta.read(_meta(snap)).records if r[0] != "OPAL CRS Component"])
    _meta(snap).write_text(meta.render())
    with pytest.raises(SnapshotError,
                       match=f"^{re.escape(str(_meta(snap)))}: no 'OPAL CRS Component'"):
        _ = LocalSnapshot(snap).component


def test_not_a_snapshot(tmp_path: Path) -> None:
    def named(p: Path) -> str:
        return f"^{re.escape(str(p))}: "

    with pytest.raises(SnapshotError, match=named(tmp_path / "nothing") + "no such snapshot"):
        LocalSnapshot(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SnapshotError, match=named(tmp_path / "file") + "not a snapshot directory"):
        LocalSnapshot(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SnapshotError, match=named(tmp_path / "empty" / META_FILE) + ".*missing"):
        LocalSnapshot(tmp_path / "empty")


# -- atomic replacement ------------------------------------------------------------------------
def test_commit_replaces_existing_snapshot(snap: Path) -> None:
    before_inode = snap.stat().st_ino
    make(snap, "new", np.ones(1000))
    s = LocalSnapshot(snap)
    s.verify()
    assert s.meta.get("Tag") == "new"
    assert s.files["array.bin"][0] == 8000
    assert snap.stat().st_ino != before_inode  # a new directory, swapped in whole
    assert sorted(p.name for p in snap.parent.iterdir()) == [snap.name]


def test_exception_inside_writer_keeps_old_snapshot(snap: Path) -> None:
    before = tree(snap)
    with pytest.raises(RuntimeError, match="component failed"):
        with SnapshotWriter(snap) as w:
            standard_meta(w.meta, "self", 1, w.final)
            w.create("array.bin").write(np.zeros(1 << 20))
            w.create("open-when-failing").write(b"abc")
            assert w.directory.is_dir()
            raise RuntimeError("component failed")
    assert tree(snap) == before
    assert sorted(p.name for p in snap.parent.iterdir()) == [snap.name]
    LocalSnapshot(snap).verify()


def test_failure_inside_commit_keeps_old_snapshot(snap: Path) -> None:
    """Commit itself fails after the files are sealed (its metadata file cannot be created)."""
    before = tree(snap)
    with pytest.raises(FileExistsError):
        with SnapshotWriter(snap) as w:
            w.create("array.bin").write(np.zeros(1000))
            (w.directory / META_FILE).write_text("in the way")
            w.commit()
    assert tree(snap) == before
    assert partials(snap.parent) == []


READER = textwrap.dedent('''
    import sys
    from pathlib import Path
    from crs.snapshot import META_FILE, Meta
    meta, seen = Path(sys.argv[1]) / META_FILE, []
    while True:
        tag = Meta.read(meta).get("Tag")      # raises if the snapshot is ever absent or mixed
        if not seen:
            print("ready", flush=True)
        if not seen or seen[-1] != tag:
            seen.append(tag)
        if tag == "v" + sys.argv[2]:
            break
    print(" ".join(seen))
''')


def test_snapshot_never_absent_while_replaced(snap: Path) -> None:
    """A reader polling the snapshot while it is replaced many times always finds a complete
    one, and sees the versions in order."""
    n = 60
    reader = subprocess.Popen([PY, "-c", READER, str(snap), str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "ready\n", reader.stderr.read()  # type: ignore[union-attr]
        for i in range(1, n + 1):
            make(snap, f"v{i}", np.full(4096, i), fsync=False)
        out, err = reader.communicate(timeout=120)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    versions = [int(t[1:]) for t in out.split() if t != "old"]
    assert out.split()[0] == "old"
    assert versions == sorted(versions) and versions[-1] == n
    assert partials(snap.parent) == []


KILLED_WRITER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    import numpy as np
    from crs.snapshot import SnapshotWriter, standard_meta
    chunk = np.arange(1 << 17, dtype=np.float64)        # 1 MiB
    with SnapshotWriter(Path(sys.argv[1])) as w:
        standard_meta(w.meta, "self", 1, w.final)
        out = w.create("array.bin")
        for i in range(300):                             # 300 MiB, slowly
            out.write(chunk)
            if i == 8:
                print(w.directory, flush=True)
            time.sleep(0.01)
        sys.stdin.readline()                             # the test never lets it commit
        w.commit()
''')


def test_sigkill_while_writing_keeps_previous_snapshot(snap: Path) -> None:
    before = tree(snap)
    writer = subprocess.Popen([PY, "-c", KILLED_WRITER, str(snap)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = writer.stdout.readline()  # type: ignore[union-attr]
        assert line, writer.stderr.read()  # type: ignore[union-attr]
        partial = Path(line.strip())
        assert partial.parent == snap.parent and partial.name.startswith(f".{snap.name}.partial-")
        assert partial.is_dir()
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    written = (partial / "array.bin").stat().st_size
    assert 9 << 20 <= written < 300 << 20  # it died in the middle of the file
    assert tree(snap) == before
    LocalSnapshot(snap).verify()
    assert LocalSnapshot(snap).meta.get("Tag") == "old"
    # the leftover does not get in the way of the next snapshot
    make(snap, "after", np.zeros(10))
    s = LocalSnapshot(snap)
    s.verify()
    assert s.meta.get("Tag") == "after"
