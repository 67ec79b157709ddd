"""Running a job until it is done: snapc_base_restarts (mpirun restarts a job whose rank died
from its newest sequence that verifies, a bounded number of times, each attempt said in one
line) and snapc_base_resume (the same command line starts a job, or resumes it from its
snapshot when it was requeued, falling back to an older sequence when the newest is damaged).
Real MPICH jobs (4 ranks saving themselves at safe points, 3 unmodified ones saved whole by
blcr); every output is compared with an uninterrupted run's."""
from __future__ import annotations

import functools
import os
import re
import signal
from pathlib import Path

import pytest

from conftest import APPS, run
from helpers import descendants, proc_stat, wait_until
from snapc.storage import GlobalSnapshot
from test_periodic import finished_seqs
from test_transparent_mpi import (  # noqa: F401 - fixtures: orphans reaped, no job left
    MPICH,
    STARTED,
    Job,
    flip_byte,
    no_job_left,
    one_line_error,
    reference,
    refused_at_launch,
    start,
    subreaper,
)

FAULTY = str(APPS / "mpi_faulty.py")
STEPS, DELAY = "200", "0.02"
NP = 4
#: how mpirun names the ranks that died, rank 1 among them (the launcher ends the others at once,
#: and which connection closes first here says nothing of which rank died first)
DIED = r"ranks? (?:\d+, )*1(?:, \d+)* \(PIDs? [\d, ]+ on \S+\) died"


@functools.cache
def faulty_reference() -> str:
    """What mpi_faulty prints when nothing fails, under the plain launcher."""
    res = run([*MPICH.plain(NP), MPICH.python, FAULTY, STEPS, "0", "none"])
    assert res.returncode == 0, res.stderr
    return res.stdout


def until_done(where: Path, fault: str, restarts: str) -> tuple[int, str, list[str], Path]:
    """mpi_faulty under -am ft-enable-cr, checkpointed every second (self, at its safe points),
    restarted by mpirun up to ``restarts`` times: its status, stdout, mpirun's lines on stderr,
    and its global snapshot directory (named after the JOBID, mpirun's PID)."""
    job = Job([MPICH.tool("mpirun"), "-am", "ft-enable-cr", "--mca", "crs", "self",
               "--mca", "snapc_base_period", "1", "--mca", "snapc_base_restarts", restarts,
               "--mca", "snapc_base_global_snapshot_dir", str(where), "-np", str(NP),
               MPICH.python, FAULTY, STEPS, DELAY, fault], where, NP)
    code, out, err = job.finish()
    lines = [ln for ln in err.splitlines() if ln.startswith("mpirun:")]
    return code, out, lines, where / f"ompi_global_snapshot_{job.pid}.ckpt"


def test_a_rank_dies_and_the_job_restarts_itself(tmp_path: Path) -> None:
    """Rank 1 is SIGKILLed after its second checkpoint: mpirun says so in one line and restarts
    the job from the newest sequence, in place (same JOBID, same global snapshot); the job ends
    with status 0 and the uninterrupted run's result."""
    code, out, lines, gdir = until_done(tmp_path, "kill:1:2", "2")
    assert code == 0, lines
    (line,) = lines
    m = re.fullmatch(rf"mpirun: {DIED}; restart 1 of 2 from sequence "
                     rf"(\d+) of {re.escape(str(gdir))}", line)
    assert m, line
    assert int(m.group(1)) >= 1  # the newest: rank 1 died after the second commit
    assert out.endswith(faulty_reference()) and out.count("result ") == 1, out


def test_an_unmodified_program_whose_rank_is_killed_restarts_itself(tmp_path: Path) -> None:
    """A rank of an unmodified program (saved whole by blcr every second) is SIGKILLed from
    outside, as a node failure would: the job is restored from its newest sequence, ranks with
    their PIDs, none starting its program again, and ends with the uninterrupted output."""
    job = start(tmp_path, 3, mca=("--mca", "snapc_base_period", "1",
                                  "--mca", "snapc_base_restarts", "2"))
    gdir = tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt"
    wait_until(lambda: finished_seqs(gdir) >= 1 or job.proc.poll() is not None,
               "a periodic checkpoint", timeout=300)
    ranks = [pid for pid in descendants(job.pid) if (st := proc_stat(pid))
             and Path(f"/proc/{st[1]}/comm").read_text().strip() == "hydra_pmi_proxy"]
    assert len(ranks) == 3, ranks
    os.kill(sorted(ranks)[1], signal.SIGKILL)
    code, out, err = job.finish()
    assert code == 0, err
    assert tuple(out.splitlines()[-3:]) == reference(3) and out.count("field crc32") == 3, out
    before, restart, after = re.split(r"(mpirun: ranks? [\d, ]+ \(PIDs? [\d, ]+ on \S+\) died; "
                                      r"restart 1 of 2 from sequence \d+ of \S+\n)", err)
    assert restart.endswith(f"of {gdir}\n") and not STARTED.search(after), err


def test_restarts_used_up_end_the_job_with_its_status(tmp_path: Path) -> None:
    """Rank 1 dies after every first checkpoint, restarted jobs too: one restart, then one line
    saying none is left, and the failed attempt's status."""
    code, out, lines, gdir = until_done(tmp_path, "killagain:1:1", "1")
    assert code != 0 and "result" not in out
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"mpirun: {DIED}; restart 1 of 1 from sequence 0 of .*",
                        lines[0]), lines
    assert re.fullmatch(rf"mpirun: {DIED}; no restart left \(snapc_base_restarts 1, "
                        r"all used\)", lines[1]), lines


def test_a_failure_before_the_first_checkpoint_is_not_restarted(tmp_path: Path) -> None:
    """Rank 1 dies at its first step (a periodic checkpoint under way then fails, and says
    so): nothing to restart from, in one line, and the failed job's status."""
    code, out, lines, gdir = until_done(tmp_path, "killagain:1:0", "3")
    assert code != 0 and "result" not in out
    assert re.fullmatch(rf"mpirun: {DIED} before the job's first checkpoint: nothing "
                        r"to restart from", lines[-1]), lines
    assert all("periodic checkpoint failed" in ln for ln in lines[:-1]), lines


def test_requeued_the_same_line_resumes_from_the_newest_sequence_that_verifies(
        tmp_path: Path) -> None:
    """The batch script's flow: one command line with snapc_base_resume DIR. The first run
    starts the job (DIR holds nothing yet), checkpoints itself every second, and on SIGUSR1
    checkpoints once more and exits 99 to be requeued. One byte of a rank's pages.img in that
    newest sequence is flipped; the same line run again says it resumes from the sequence
    before, and why, and ends with the uninterrupted run's output (unmodified ranks, saved whole
    by blcr)."""
    snapshots = tmp_path / "stencil.ckpt"
    cmd = [MPICH.tool("mpirun"), "-am", "ft-enable-cr", "--mca", "crs", "blcr",
           "--mca", "snapc_base_resume", str(snapshots), "--mca", "snapc_base_period", "1",
           "--mca", "snapc_base_checkpoint_signal", "USR1", "-np", "3", MPICH.python,
           str(APPS / "mpi_transparent.py"), "1200", "0.005"]
    first = Job(cmd, tmp_path, 3)
    wait_until(lambda: finished_seqs(snapshots) >= 1 or first.proc.poll() is not None,
               "a periodic checkpoint", timeout=300)
    first.proc.send_signal(signal.SIGUSR1)
    code, out, err = first.finish()
    assert code == 99, err
    lines = [ln for ln in err.splitlines() if ln.startswith("mpirun:")]
    assert lines[0] == (f"mpirun: {snapshots} holds no finished sequence: starting the job "
                        "(snapc_base_resume)"), lines
    *_, older, newest = GlobalSnapshot(snapshots).finished
    assert f"SIGUSR1: checkpoint sequence {newest} committed" in lines[-1], lines
    pages = snapshots / str(newest) / "opal_snapshot_1.ckpt" / "pages.img"
    flip_byte(pages)

    again = Job(cmd, tmp_path, 3)
    code, out, err = again.finish()
    assert code == 0, err
    assert tuple(out.splitlines()) == reference(3)
    lines = [ln for ln in err.splitlines() if ln.startswith("mpirun:")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"mpirun: resuming from sequence {older} of {snapshots} "
                               f"(snapc_base_resume); sequence {newest} does not verify: "
                               f"{pages}: snapshot file is corrupted"), lines

    other = run([*cmd[:-2], "1300", "0.005"], cwd=tmp_path)  # not the program it holds
    assert other.returncode == 1 and other.stdout == ""
    one_line_error(other.stderr, "mpirun", f"snapc_base_resume: {snapshots} holds a snapshot "
                   "of another program", "1200 0.005")


def test_a_job_ended_by_a_signal_is_not_restarted(tmp_path: Path) -> None:
    """SIGTERM to mpirun (kill JOBID, a batch system's scancel) is passed on to the job, which
    ends by it: on purpose, not a failure; it is not restarted."""
    job = start(tmp_path, 3, mca=("--mca", "snapc_base_period", "1",
                                  "--mca", "snapc_base_restarts", "2"))
    gdir = tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt"
    wait_until(lambda: finished_seqs(gdir) >= 1 or job.proc.poll() is not None,
               "a periodic checkpoint", timeout=300)
    job.proc.send_signal(signal.SIGTERM)
    code, out, err = job.finish()
    assert code != 0 and "field crc32" not in out, err
    assert "restart" not in err, err


@pytest.mark.parametrize("name,value,words", [
    ("snapc_base_restarts", "-1", "must be 0 (off) or a positive number"),
    ("snapc_base_restarts", "many", "snapc_base_restarts"),
    ("snapc_base_resume", "a-file", "is not a directory"),
    ("snapc_base_resume", "a-dir", "is neither a global snapshot"),
])
def test_bad_values_are_refused_at_launch(tmp_path: Path, name: str, value: str,
                                          words: str) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-dir" / "notes.txt").write_text("")
    refused_at_launch(tmp_path, name, value, words)
