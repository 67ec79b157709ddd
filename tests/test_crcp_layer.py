"""The MPI layer (snapc/crcp) on its own: real MPICH jobs under mpiexec with the layer
preloaded, taken to a cut, torn down and rebuilt at random moments by a thread of each rank (as
a checkpoint that continues does), ending with the answer of a run without the layer; and what
the ranks see of it, checked inside them (tests/mpi/test_crcp_ranks.py, pytest-mpi)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import APPS, BIN, ROOT
from snapc import crcp

APP = APPS / "crcp_cycles.py"
MPI_TESTS = Path(__file__).resolve().parent / "mpi"


def run(n: int, *args: str, layer: bool = True,
        app: Path | None = APP) -> subprocess.CompletedProcess[str]:
    """``python APP ARGS`` (or ``python ARGS`` without an app) on ``n`` ranks, under the
    layer."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    preload = ["-genv", "LD_PRELOAD", str(crcp.library_path())] if layer else []
    script = [str(app)] if app else []
    return subprocess.run([str(BIN / "mpiexec"), "-n", str(n), *preload, str(BIN / "python"),
                           *script, *args], capture_output=True, text=True, timeout=300,
                          env=env, stdin=subprocess.DEVNULL, close_fds=True, cwd=ROOT)


def result(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = re.findall(r"^RESULT .*$", proc.stdout, re.M)
    assert len(found) == 1, proc.stdout + proc.stderr
    return found[0]


@pytest.fixture(scope="module")
def reference() -> dict[int, str]:
    return {n: result(run(n, "250", "0", "0", layer=False)) for n in (2, 3, 4)}


def test_layer_is_built() -> None:
    assert crcp.library_path().exists()


def test_without_cycles_the_layer_changes_nothing(reference: dict[int, str]) -> None:
    assert result(run(3, "250", "0", "0")) == reference[3]


@pytest.mark.parametrize("n,seed", [(2, 1), (3, 2), (3, 3), (4, 4)])
def test_cuts_at_random_moments_keep_the_answer(reference: dict[int, str], n: int,
                                                seed: int) -> None:
    proc = run(n, "250", "6", str(seed))
    assert result(proc) == reference[n]
    cycles = re.findall(r"^\[(\d+)\] cycle drained (\d+)$", proc.stdout, re.M)
    # every rank went through the same number of cycles, at least one
    per_rank = {rank: sum(1 for r, _ in cycles if r == rank) for rank, _ in cycles}
    assert len(per_rank) == n and len(set(per_rank.values())) == 1, proc.stdout
    assert min(per_rank.values()) >= 1


def test_in_the_ranks() -> None:
    """tests/mpi/test_crcp_ranks.py inside every rank of a 3-rank job under the layer
    (pytest-mpi): a message in flight at a cut is drained and delivered after it, a live
    shared-memory window is refused by every rank, a cut not reached within its timeout is given
    up by every rank and the job goes on."""
    proc = run(3, "-m", "pytest", "--with-mpi", "-q", "-p", "no:cacheprovider",
               str(MPI_TESTS / "test_crcp_ranks.py"), app=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # every rank ran every test, none skipped (the ranks' summaries may share a line)
    assert re.findall(r"(\d+) passed", proc.stdout) == ["7"] * 3, proc.stdout
