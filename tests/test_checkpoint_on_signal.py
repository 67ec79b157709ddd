"""A checkpoint when the batch system warns (snapc_base_checkpoint_signal): mpirun takes the
signal as a checkpoint request instead of passing it on, then ends the job with the requeue
status (or lets it go on), and the job restarts from that checkpoint to the uninterrupted
output."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from test_transparent_mpi import reference, refused_at_launch, restarted, start

SIGNAL = ("--mca", "snapc_base_checkpoint_signal", "USR1")


def test_the_signal_checkpoints_then_ends_the_job_for_requeue(tmp_path: Path) -> None:
    job = start(tmp_path, 3, mca=SIGNAL)
    job.wait_started()
    job.proc.send_signal(signal.SIGUSR1)
    code, out, err = job.finish()
    assert code == 99, err
    gdir = tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt"
    lines = [ln for ln in err.splitlines() if ln.startswith("mpirun:")]
    assert lines == [f"mpirun: SIGUSR1: checkpoint sequence 0 committed in {gdir}; ending the "
                     "job (exit status 99: requeue it)"], err
    restarted(gdir, 3)  # the requeued job: from the checkpoint to the uninterrupted output


def test_the_signal_checkpoints_and_the_job_goes_on(tmp_path: Path) -> None:
    job = start(tmp_path, 3, mca=(*SIGNAL, "--mca", "snapc_base_signal_then", "continue"))
    job.wait_started()
    job.proc.send_signal(signal.SIGUSR1)
    code, out, err = job.finish()
    assert code == 0, err
    assert tuple(out.splitlines()) == reference(3)  # the ranks never saw the signal
    assert "SIGUSR1: checkpoint sequence 0 committed" in err and "the job goes on" in err, err
    assert (tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt" / "0").is_dir()


@pytest.mark.parametrize("name,value,words", [
    ("snapc_base_checkpoint_signal", "KILL", "SIGKILL cannot be used"),
    ("snapc_base_checkpoint_signal", "USR9", "is not a signal"),
    ("snapc_base_signal_then", "maybe", "is not one of end, continue"),
    ("snapc_base_requeue_status", "300", "is not an exit status"),
])
def test_bad_values_are_refused_at_launch(tmp_path: Path, name: str, value: str,
                                          words: str) -> None:
    refused_at_launch(tmp_path, name, value, words)
