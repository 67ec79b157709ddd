"""Unmodified mpi4py programs of the kinds users write (tests/apps/users/), each checkpointed
at a random moment, killed, and restarted: what the restarted job prints is the rest of an
uninterrupted run's output, digests included, and the files it writes are the same bytes.
Under blcr in `make test`; under mtcp too in `make test-long`."""
from __future__ import annotations

import filecmp
import random
import time
from pathlib import Path

import pytest

from conftest import APPS, run
from test_transparent_mpi import MPICH, Job, checkpoint, restart

USERS = APPS / "users"
# program and arguments: each runs for several seconds on a loaded 2-core machine
PROGRAMS = {
    "stencil2d": ["stencil2d.py", "400", "0.01"],
    "master_worker": ["master_worker.py", "300", "0.01"],
    "rma_counter": ["rma_counter.py", "600", "0.005"],
    "persistent": ["persistent.py", "600", "0.005"],
    "pkl5": ["pkl5_app.py", "80", "0.03"],
    # rank 0 submits, the others are the pool (mpi4py.futures frees every task's send: under
    # the layer its shutdown hung in MPI_Comm_disconnect)
    "futures": ["-m", "mpi4py.futures", "futures_app.py", "600", "0.01"],
}
OUTPUT_FILES = {"stencil2d": ["field.dat", "records.txt"]}


def python_args(name: str) -> list[str]:
    """What the program's ranks run after ``python``: the script in tests/apps/users, run as
    it is or by a module (``-m mpi4py.futures``), and its arguments."""
    return [str(USERS / a) if a.endswith(".py") else a for a in PROGRAMS[name]]


def plain(name: str, where: Path) -> list[str]:
    where.mkdir()
    res = run([*MPICH.plain(3), MPICH.python, *python_args(name)], cwd=where)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


@pytest.mark.parametrize("component", ["blcr", pytest.param("mtcp", marks=pytest.mark.long)])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_checkpoint_kill_restart_gives_the_uninterrupted_output(tmp_path: Path, name: str,
                                                                component: str) -> None:
    reference = plain(name, tmp_path / "plain")
    where = tmp_path / "cr"
    where.mkdir()
    job = Job([MPICH.tool("mpirun"), *MPICH.launcher_options, "-am", "ft-enable-cr",
               "--mca", "crs", component, "--mca", "snapc_base_global_snapshot_dir", str(where),
               "-np", "3", MPICH.python, *python_args(name)], where, 3)
    time.sleep(random.uniform(0.5, 3.0))  # a random moment (the request waits for MPI_Init)
    _, gdir = checkpoint(MPICH, job.pid, job=job)
    job.kill()
    res = restart(MPICH, gdir)
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out, res.stderr
    assert out == reference[len(reference) - len(out):], (out, reference)  # the rest of it
    for file in OUTPUT_FILES.get(name, []):
        assert filecmp.cmp(tmp_path / "plain" / file, where / file, shallow=False), file
