"""Snapshot housekeeping as a user does it: ``pycrs-snapshots list``, ``verify`` and ``prune`` on
the snapshots of real jobs and processes; stale control sockets of killed processes removed; the
default snapshot directory ($SCRATCH, else the working directory)."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, run, tool, tree_digest
from crs.params import Params
from helpers import kill_session, wait_for_endpoint, wait_for_job_endpoint, wait_until
from snapc.storage import GlobalSnapshot
from test_snapc_e2e import STENCIL, checkpoint, start_job
from test_transparent_mpi import MPICH, one_line_error

SNAPSHOTS = str(BIN / "pycrs-snapshots")
DAY = 86400


def snapshots(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return run([SNAPSHOTS, *args], **kw)


def listed(where: Path, *options: str) -> dict[str, list[str]]:
    """``pycrs-snapshots list``: each snapshot's row by name (the header checked)."""
    res = snapshots("list", *options, str(where))
    assert res.returncode == 0 and res.stderr == "", res.stderr
    header, *lines = res.stdout.splitlines()
    assert header.split() == ["NAME", "KIND", "SEQ", "COMPONENT", "NP", "SIZE", "AGE", "STATE"]
    return {line.split()[0]: line.split(maxsplit=8)[1:] for line in lines}  # SIZE: 2 words


def backdate(path: Path, days: float) -> None:
    """Make a snapshot or sequence directory look ``days`` old (its modification time)."""
    t = time.time() - days * DAY
    os.utime(path, (t, t))


@pytest.fixture
def job_with_three_sequences(tmp_path: Path, private_home: Path):  # type: ignore[no-untyped-def]
    """A running 2-rank job under mpirun -am ft-enable-cr, checkpointed three times."""
    job = start_job(MPICH, [STENCIL, "100000", "0.02"], tmp_path, np_=2)
    try:
        for want in range(3):
            seq, gdir = checkpoint(MPICH, job)
            assert seq == want
        yield job, gdir
    finally:
        kill_session(job.pid)
        job.wait()


def test_list_verify_and_prune_a_running_jobs_snapshot(job_with_three_sequences) -> None:  # type: ignore[no-untyped-def]
    job, gdir = job_with_three_sequences
    row = listed(gdir.parent)[gdir.name]
    assert row[:4] == ["global", "0-2", "self", "2"], row
    assert row[-1] == "complete"
    assert listed(gdir.parent, "--deep")[gdir.name][-1] == "verified"
    assert listed(gdir.parent, "--no-check")[gdir.name][-1] == "not checked"

    res = snapshots("verify", str(gdir))
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{gdir}: verified (sequences 0-2)\n"

    before = tree_digest(gdir)
    res = snapshots("prune", "--keep", "2", "--dry-run", str(gdir.parent))
    assert res.returncode == 0, res.stderr
    assert f"would remove sequence 0 of {gdir} (kept 1,2)" in res.stdout.splitlines()
    assert tree_digest(gdir) == before

    res = snapshots("prune", "--keep", "2", str(gdir.parent))
    assert res.returncode == 0, res.stderr
    assert f"removed sequence 0 of {gdir} (kept 1,2)" in res.stdout.splitlines()
    gs = GlobalSnapshot(gdir)
    assert (gs.finished, gs.removed) == ([1, 2], {0})
    assert not (gdir / "0").exists()
    # the running job's next commit keeps what prune recorded
    assert checkpoint(MPICH, job)[0] == 3
    gs = GlobalSnapshot(gdir)
    assert (gs.finished, gs.removed) == ([1, 2, 3], {0})
    res = run([MPICH.tool("ompi-restart"), "--seq", "0", str(gdir)])
    one_line_error(res.stderr, "ompi-restart", "sequence 0 was removed")


def test_prune_keeps_the_sequence_a_running_job_restarted_from(job_with_three_sequences
                                                               ) -> None:  # type: ignore[no-untyped-def]
    job, gdir = job_with_three_sequences
    kill_session(job.pid)
    job.wait()
    again = subprocess.Popen([MPICH.tool("ompi-restart"), "--seq", "0", str(gdir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        wait_for_job_endpoint(again, details=again.communicate)
        res = snapshots("prune", "--keep", "1", str(gdir.parent))
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert f"removed sequence 1 of {gdir} (kept 0,2)" in lines, lines
        assert (f"kept sequence 0 of {gdir.name}: job {again.pid} restarted from it and is "
                "running") in lines, lines
        # nor is the snapshot removed whole while the job runs
        for seq in (0, 2):
            backdate(gdir / str(seq), 10)
        res = snapshots("prune", "--older-than", "1d", str(gdir.parent))
        assert res.returncode == 0, res.stderr
        assert GlobalSnapshot(gdir).finished == [0], res.stdout
    finally:
        kill_session(again.pid)
        again.wait()


def test_prune_by_age_then_whole_snapshots(job_with_three_sequences) -> None:  # type: ignore[no-untyped-def]
    job, gdir = job_with_three_sequences
    kill_session(job.pid)
    job.wait()
    backdate(gdir / "0", 5)
    backdate(gdir / "1", 2)
    res = snapshots("prune", "--older-than", "3d", str(gdir.parent))
    assert res.returncode == 0, res.stderr
    assert f"removed sequence 0 of {gdir} (kept 1,2)" in res.stdout.splitlines()
    # --keep and --older-than together: only what both name
    backdate(gdir / "2", 2)
    res = snapshots("prune", "--keep", "1", "--older-than", "3d", str(gdir.parent))
    assert res.returncode == 0 and str(gdir) not in res.stdout, res.stdout
    res = snapshots("prune", "--keep", "1", "--older-than", "36h", str(gdir.parent))
    assert f"removed sequence 1 of {gdir} (kept 2)" in res.stdout.splitlines()
    # nothing newer than the age, and the job is gone: the whole snapshot goes
    res = snapshots("prune", "--older-than", "1d", str(gdir.parent))
    assert res.returncode == 0, res.stderr
    assert f"removed {gdir} (nothing newer than 1d)" in res.stdout.splitlines()
    assert not gdir.exists() and not [p for p in gdir.parent.iterdir() if "ckpt" in p.name]


def local_snapshot(where: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A python process saved from outside by opal-checkpoint (blcr): its pages are checked by
    a CRC per MiB."""
    proc = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.05)"])
    res = run([tool("opal-checkpoint"), "--mca", "crs", "blcr", "-w", str(where), str(proc.pid)])
    assert res.returncode == 0, res.stderr
    return proc, where / f"opal_snapshot_{proc.pid}.ckpt"


def test_a_damaged_pages_image_is_found(tmp_path: Path, private_home: Path) -> None:
    proc, snap = local_snapshot(tmp_path)
    proc.kill()
    proc.wait()
    row = listed(tmp_path)[snap.name]
    assert row[:4] == ["local", "-", "blcr", "1"] and row[-1] == "complete", row
    assert snapshots("verify", str(snap)).returncode == 0
    meta = (snap / "snapshot_meta.data").read_text()
    pages = re.search(r"^# File: (\S+) (\d+) crc32c/", meta, re.M)
    assert pages, meta
    image = snap / pages.group(1)
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x40
    image.write_bytes(data)
    assert listed(tmp_path)[snap.name][-1] == "complete"  # the fast check reads no pages
    assert listed(tmp_path, "--deep")[snap.name][-1].startswith("damaged:")
    res = snapshots("verify", str(snap))
    assert res.returncode == 1 and res.stdout == ""
    one_line_error(res.stderr, "pycrs-snapshots", str(image), "checksum mismatch")
    # a bare name is found in the default directory, here $SCRATCH
    res = snapshots("verify", snap.name, env={**os.environ, "SCRATCH": str(tmp_path)})
    assert res.returncode == 1 and str(image) in res.stderr


def test_prune_local_snapshots_by_age_not_a_live_processes(tmp_path: Path,
                                                          private_home: Path) -> None:
    live, kept = local_snapshot(tmp_path)
    try:
        dead, old = local_snapshot(tmp_path)
        dead.kill()
        dead.wait()
        for snap in (kept, old):
            backdate(snap, 4)
        res = snapshots("prune", "--older-than", "2d", str(tmp_path))
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert f"removed {old} (4d old)" in lines, lines
        assert f"kept {kept.name}: process {live.pid} is running and may checkpoint into it " \
            "again" in lines, lines
        assert kept.exists() and not old.exists()
    finally:
        live.kill()
        live.wait()


def test_stale_sockets_and_partials_of_dead_processes_are_removed(
        tmp_path: Path, private_home: Path, private_control_dir: Path) -> None:
    def killed_under_pycrs() -> Path:
        proc = subprocess.Popen([tool("pycrs"), "run", sys.executable, "-c",
                                 "import time; time.sleep(600)"], cwd=tmp_path)
        wait_for_endpoint(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return private_control_dir / f"crs-{proc.pid}.sock"

    first = killed_under_pycrs()
    assert first.exists()  # a killed process cannot remove its socket ...
    second = killed_under_pycrs()
    assert not first.exists()  # ... the next process under pycrs removes it
    # prune removes them too, and the partial directories of dead writers
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    partial = tmp_path / f".opal_snapshot_{gone}.ckpt.partial-{gone}-1-{socket.gethostname()}"
    (partial / "sub").mkdir(parents=True)
    # a writer on another node that shares the file system: its PID means nothing here
    elsewhere = tmp_path / f".opal_snapshot_{gone}.ckpt.partial-{gone}-1-another-node"
    elsewhere.mkdir()
    before = snapshots("prune", "--dry-run", str(tmp_path))
    assert before.returncode == 0 and second.exists() and partial.exists()
    res = snapshots("prune", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.replace("removed", "would remove") == before.stdout
    assert f"removed {second} (control socket of a process that is gone)" in res.stdout
    assert f"removed {partial} (left by a writer that is gone)" in res.stdout
    assert not second.exists() and not partial.exists()
    assert elsewhere.exists() and str(elsewhere) not in res.stdout


def spoil_metadata(gdir: Path) -> None:
    meta = gdir / "global_snapshot_meta.data"
    meta.write_text(meta.read_text().replace("# NP: 2", "# NP: 3"))


def test_bad_input_is_one_line_and_damages_nothing(job_with_three_sequences,
                                                   tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job, gdir = job_with_three_sequences
    kill_session(job.pid)
    job.wait()
    spoil_metadata(gdir)
    before = tree_digest(gdir)
    row = listed(gdir.parent)[gdir.name]
    assert row[-1].startswith("damaged:") and "metadata is corrupted" in row[-1], row
    res = snapshots("verify", str(gdir))
    assert res.returncode == 1
    one_line_error(res.stderr, "pycrs-snapshots", "metadata is corrupted")
    res = snapshots("prune", "--keep", "1", "--older-than", "0s", str(gdir.parent))
    assert res.returncode == 1
    one_line_error(res.stderr, "pycrs-snapshots", gdir.name, "left as it is")
    assert tree_digest(gdir) == before
    (tmp_path / "notes.txt").write_text("not a snapshot\n")
    cases = {
        ("list", str(tmp_path / "missing")): ("no such directory", 1),
        ("verify", str(tmp_path / "missing")): ("no such snapshot", 1),
        ("verify", str(tmp_path / "notes.txt")): ("not a snapshot directory", 1),
        ("verify", str(tmp_path)): ("not a snapshot", 1),
        ("prune", "--older-than", "3 days", str(tmp_path)): ("--older-than", 2),
        ("prune", "--keep", "0", str(tmp_path)): ("--keep 0", 2),
    }
    for args, (needle, code) in cases.items():
        res = snapshots(*args)
        assert res.returncode == code, (args, res.stderr)
        one_line_error(res.stderr, "pycrs-snapshots", needle)
    res = snapshots("prune", "--keep", "x", str(tmp_path))  # argparse's: the subcommand named
    assert res.returncode == 2
    one_line_error(res.stderr, "pycrs-snapshots prune", "--keep", "'x'")
    assert tree_digest(gdir) == before


def test_default_snapshot_directories(tmp_path: Path) -> None:
    import snapc  # noqa: F401 - registers SnapC's parameters

    for name in ("crs_base_snapshot_dir", "snapc_base_global_snapshot_dir"):
        assert Params(env={"SCRATCH": str(tmp_path)}).get_path(name) == tmp_path
        assert Params(env={}).get_path(name) == Path(".")
        assert Params(env={"SCRATCH": ""}).get_path(name) == Path(".")
        given = Params(cli=[(name, "$SCRATCH/ckpt")], env={"SCRATCH": "/scr"})
        assert given.get_path(name) == Path("/scr/ckpt")
        assert given.child_env()[f"OMPI_MCA_{name}"] == "$SCRATCH/ckpt"
    res = run([str(BIN / "mpirun"), "-am", "ft-enable-cr", "--mca",
               "snapc_base_global_snapshot_dir", "$NO_SUCH_VARIABLE/x", "-np", "1",
               MPICH.python, "-c", "pass"], cwd=tmp_path,
              env={k: v for k, v in os.environ.items() if k != "NO_SUCH_VARIABLE"})
    assert res.returncode != 0
    one_line_error(res.stderr, "mpirun", "$NO_SUCH_VARIABLE", "not set")


def test_a_job_writes_into_its_working_directory_by_default(tmp_path: Path,
                                                            private_home: Path) -> None:
    cmd = [MPICH.tool("mpirun"), "-am", "ft-enable-cr", "-np", "2", MPICH.python, STENCIL,
           "100000", "0.02"]
    job = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_job_endpoint(job, details=job.communicate)
        seq, gdir = checkpoint(MPICH, job)
        assert gdir == tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt"
        wait_until(lambda: (gdir / str(seq)).is_dir(), "the sequence")
    finally:
        kill_session(job.pid)
        job.wait()

