"""End to end with real MPI jobs: mpirun -am ft-enable-cr, ompi-checkpoint, SIGKILL of the whole
job, ompi-restart; every restarted job must print exactly what an uninterrupted run prints."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import APPS, MPI, ROOT, expected_after, restarted_at, run, tree_digest
from helpers import kill_session, proc_state, wait_for_job_endpoint, wait_until

STENCIL = str(ROOT / "examples" / "mpi_stencil.py")
STEPS, DELAY = "400", "0.02"
FAULTY = str(APPS / "mpi_faulty.py")
FAULTY_STEPS = "400"  # 8 s: the second checkpoint of a test must come well before the end


def start_job(mpi: MPI, args: list[str], gdir: Path, np_: int = 4,
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Our mpirun in C/R mode, as a user starts it, in its own session so that it can be killed
    whole; returns once the job's control endpoint is up."""
    cmd = [mpi.tool("mpirun"), *mpi.launcher_options, "-am", "ft-enable-cr", "--mca",
           "snapc_base_global_snapshot_dir", str(gdir), "-np", str(np_), mpi.python, *args]
    proc = subprocess.Popen(cmd, cwd=gdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env)
    wait_for_job_endpoint(proc, details=proc.communicate)
    return proc


def checkpoint(mpi: MPI, jobid: int, *extra: str) -> tuple[int, Path]:
    res = run([mpi.tool("ompi-checkpoint"), *extra, str(jobid)])
    assert res.returncode == 0, res.stderr
    m = re.fullmatch(r"Snapshot Ref\.: (\d+) (\S+) \(.+\)\n", res.stdout)
    assert m, res.stdout
    return int(m.group(1)), Path(m.group(2))


def restart(mpi: MPI, gdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run([mpi.tool("ompi-restart"), *extra, str(gdir)])


@pytest.fixture(scope="module")
def reference(mpi: MPI) -> list[str]:
    """The stencil's output under the plain launcher, without C/R."""
    res = run([*mpi.plain(4), mpi.python, STENCIL, STEPS, "0"])
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_checkpoint_twice_kill_restart_newest_then_seq0(mpi: MPI, tmp_path: Path,
                                                        reference: list[str]) -> None:
    job = start_job(mpi, [STENCIL, STEPS, DELAY], tmp_path)
    time.sleep(2)
    seq0, gdir = checkpoint(mpi, job.pid)
    time.sleep(1)
    seq1, gdir1 = checkpoint(mpi, job.pid)
    assert (seq0, seq1) == (0, 1)
    assert gdir == gdir1 == tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt"
    kill_session(job.pid)
    job.wait()

    newest = restart(mpi, gdir)
    assert newest.returncode == 0, newest.stderr
    at = restarted_at(newest.stderr)
    assert newest.stdout.splitlines() == expected_after(reference, at)

    oldest = restart(mpi, gdir, "--seq", "0")
    assert oldest.returncode == 0, oldest.stderr
    at0 = restarted_at(oldest.stderr)
    assert at0 < at
    assert oldest.stdout.splitlines() == expected_after(reference, at0)


def test_term_ends_the_job_then_restart(mpi: MPI, tmp_path: Path, reference: list[str]) -> None:
    job = start_job(mpi, [STENCIL, STEPS, DELAY], tmp_path)
    time.sleep(2)
    _, gdir = checkpoint(mpi, job.pid, "--term")
    out, err = job.communicate(timeout=120)
    assert job.returncode == 0, err
    assert "result" not in out
    res = restart(mpi, gdir)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == expected_after(reference, restarted_at(res.stderr))


def test_stop_then_sigcont_to_mpirun(mpi: MPI, tmp_path: Path, reference: list[str]) -> None:
    job = start_job(mpi, [STENCIL, STEPS, DELAY], tmp_path)
    time.sleep(2)
    _, gdir = checkpoint(mpi, job.pid, "--stop")
    ctl = Path(os.environ["PYCRS_CONTROL_DIR"])
    ranks = [int(p.stem.split("-")[1]) for p in ctl.glob("crs-*.sock")]
    assert len(ranks) == 4
    wait_until(lambda: all(proc_state(pid) == "T" for pid in ranks), "the ranks to stop", 30)
    time.sleep(1)
    assert all(proc_state(pid) == "T" for pid in ranks), "ranks stay stopped"
    os.kill(job.pid, signal.SIGCONT)
    out, err = job.communicate(timeout=180)
    assert job.returncode == 0, err
    assert out.splitlines() == reference
    res = restart(mpi, gdir)
    assert res.stdout.splitlines() == expected_after(reference, restarted_at(res.stderr))


def test_restarted_job_continues_the_same_history(mpi: MPI, tmp_path: Path,
                                                  reference: list[str]) -> None:
    job = start_job(mpi, [STENCIL, STEPS, DELAY], tmp_path)
    time.sleep(2)
    _, gdir = checkpoint(mpi, job.pid)
    kill_session(job.pid)
    job.wait()

    again = subprocess.Popen([mpi.tool("ompi-restart"), str(gdir)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_job_endpoint(again, details=again.communicate)
    time.sleep(2)
    seq, gdir2 = checkpoint(mpi, again.pid)
    assert (seq, gdir2) == (1, gdir)  # same directory, next sequence
    kill_session(again.pid)
    again.wait()
    res = restart(mpi, gdir)  # newest: the restarted job's own snapshot
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == expected_after(reference, restarted_at(res.stderr))


@pytest.fixture(scope="module")
def faulty_reference(mpi: MPI) -> str:
    res = run([*mpi.plain(4), mpi.python, FAULTY, FAULTY_STEPS, "0", "none"])
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_failing_rank_fails_the_checkpoint_cleanly(mpi: MPI, tmp_path: Path,
                                                   faulty_reference: str) -> None:
    job = start_job(mpi, [FAULTY, FAULTY_STEPS, "0.02", "raise:2:2"], tmp_path)
    time.sleep(1.5)
    _, gdir = checkpoint(mpi, job.pid)
    before = tree_digest(gdir)
    res = run([mpi.tool("ompi-checkpoint"), str(job.pid)])
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "rank 2" in res.stderr and "cannot save" in res.stderr
    assert tree_digest(gdir) == before, "the earlier snapshot is untouched"
    assert not list(gdir.glob(".*partial*"))
    out, err = job.communicate(timeout=120)
    assert job.returncode == 0, err
    assert out == faulty_reference  # the job went on
    assert restart(mpi, gdir).stdout == faulty_reference


def test_rank_dying_during_checkpoint(mpi: MPI, tmp_path: Path, faulty_reference: str) -> None:
    job = start_job(mpi, [FAULTY, FAULTY_STEPS, "0.02", "die:1:2"], tmp_path)
    time.sleep(1.5)
    _, gdir = checkpoint(mpi, job.pid)
    res = run([mpi.tool("ompi-checkpoint"), str(job.pid)])
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    # the launcher kills the other ranks at once: rank 1 is named, perhaps with them
    assert re.search(r"\branks? (\d+, )*1\b", res.stderr), res.stderr
    assert "died during the checkpoint" in res.stderr
    kill_session(job.pid)
    job.wait()
    assert not list(gdir.glob(".*partial*"))
    again = restart(mpi, gdir)
    assert again.returncode == 0, again.stderr
    assert again.stdout == faulty_reference


def test_mpirun_killed_mid_checkpoint_leaves_previous_sequence(mpi: MPI, tmp_path: Path,
                                                               faulty_reference: str) -> None:
    job = start_job(mpi, [FAULTY, FAULTY_STEPS, "0.02", "slow:0:2"], tmp_path)
    time.sleep(1.5)
    _, gdir = checkpoint(mpi, job.pid)
    pending = subprocess.Popen([mpi.tool("ompi-checkpoint"), str(job.pid)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    # the others saved, rank 0 is slow
    wait_until(lambda: bool(list(gdir.glob(".*partial*/opal_snapshot_1.ckpt"))),
               "rank 1's local snapshot", 60)
    kill_session(job.pid)
    job.wait()
    _, err = pending.communicate(timeout=60)
    assert pending.returncode == 1 and err.count("\n") == 1, err
    res = restart(mpi, gdir)
    assert res.returncode == 0, res.stderr
    assert res.stdout == faulty_reference
    listing = run([mpi.tool("ompi-restart"), "--showme", "--seq", "1", str(gdir)])
    assert listing.returncode == 1 and "sequence 1" in listing.stderr


def test_overlapping_requests_are_queued_in_order(mpi: MPI, tmp_path: Path,
                                                  faulty_reference: str) -> None:
    # the first checkpoint lasts (rank 0 pauses in it)
    job = start_job(mpi, [FAULTY, FAULTY_STEPS, "0.02", "pause:0:1"], tmp_path)
    waiting = [subprocess.Popen([mpi.tool("ompi-checkpoint"), "-s", str(job.pid)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    nowait = run([mpi.tool("ompi-checkpoint"), "--nowait", str(job.pid)])
    assert nowait.returncode == 0 and nowait.stdout == f"Checkpoint of job {job.pid} requested\n"
    results = [p.communicate(timeout=300) for p in waiting]
    assert all(p.returncode == 0 for p in waiting), results
    seqs = sorted(int(out.split()[2]) for out, _ in results)
    assert len(set(seqs)) == 2 and set(seqs) <= {0, 1, 2}  # each its own sequence, none mixed
    assert any("queued behind" in err for _, err in results)
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    assert out == faulty_reference
    gdir = tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt"
    for seq in (0, 1, 2):  # the --nowait request was served too
        assert restart(mpi, gdir, "--seq", str(seq)).stdout == faulty_reference
