"""mpi4py's own test suite as the yardstick of an invisible MPI layer: a chosen subset of its
modules (fast ones, each exercising an object kind the layer virtualizes) gives the same verdict,
test by test and rank by rank, under ``mpirun -am ft-enable-cr --mca crs blcr`` as under the
plain launcher, first with no checkpoint (the layer alone), then in one longer job checkpointed
at random moments while it runs, and killed and restarted from such a checkpoint (blcr in
make test, mtcp in make test-long). The whole suite, module by module, by hand:
``python -m tests.peer.suite --np 2 --crs blcr`` (tests/peer/suite.py)."""
from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BIN, tool
from helpers import kill_tree, reap
from peer.suite import Verdict, run_module, suite_dir
from test_transparent_mpi import subreaper  # noqa: F401 - orphans of a killed job reaped here

# about 2 min in all, plain and layer, on the 2-core dev VM
MODULES = ["test_attributes", "test_cco_ngh_obj", "test_cco_obj_inter", "test_comm",
           "test_comm_topo", "test_errhandler", "test_errorcode", "test_exceptions", "test_file",
           "test_grequest", "test_group", "test_handle", "test_objmodel", "test_subclass",
           "test_util_pkl5", "test_win"]


@pytest.fixture(scope="module")
def suite() -> Path:
    return suite_dir()


def _plain_then_layer(tmp_path: Path, suite: Path, module: str, nprocs: int) -> None:
    python = str(BIN / "python")
    plain = run_module([str(BIN / "mpiexec"), "-n", str(nprocs)], suite, module,
                       tmp_path / "plain", python=python, timeout=300)
    layer = run_module([str(BIN / "mpirun"), "-am", "ft-enable-cr", "--mca", "crs", "blcr",
                        "-np", str(nprocs)], suite, module, tmp_path / "layer", python=python,
                       timeout=300)
    assert plain.outcomes and plain.returncode == 0, plain.output[-3000:]
    diffs = layer.differences(plain)
    assert not diffs, "\n".join(diffs[:20]) + "\n" + layer.output[-3000:]


@pytest.mark.parametrize("module", MODULES)
def test_module_gives_the_plain_launchers_verdict(tmp_path: Path, suite: Path,
                                                  module: str) -> None:
    _plain_then_layer(tmp_path, suite, module, 2)


@pytest.mark.xfail(strict=True, reason="with 3 ranks, MPICH fails an assertion in its datatype "
                   "packing (typerep_yaksa_pack.c:326) in test_cco_obj_inter under the layer, "
                   "and the job aborts; with 2 ranks the module passes")
def test_intercommunicator_collectives_on_three_ranks(tmp_path: Path, suite: Path) -> None:
    _plain_then_layer(tmp_path, suite, "test_cco_obj_inter", 3)


# --- with checkpoints while the suite runs, and with a kill and a restart in the middle ---------

# one job of about 15-20 s under the plain launcher on the 2-core dev VM: long enough to be
# checkpointed at random moments inside it
LONG_RUN = [*MODULES, "test_cco_buf", "test_p2p_buf", "test_rma", "test_cco_nb_buf",
            "test_msgspec"]


@pytest.fixture(scope="module")
def plain_long_run(suite: Path, tmp_path_factory: pytest.TempPathFactory):
    """The plain launcher's verdicts on LONG_RUN and how long it ran (s), per number of ranks,
    run once each: checkpoints are asked for within that time."""
    runs: dict[int, tuple[Verdict, float]] = {}

    def get(nprocs: int) -> tuple[Verdict, float]:
        if nprocs not in runs:
            out = tmp_path_factory.mktemp(f"plain{nprocs}")
            started = time.monotonic()
            verdict = run_module([str(BIN / "mpiexec"), "-n", str(nprocs)], suite, LONG_RUN,
                                 out, python=str(BIN / "python"), timeout=900)
            assert verdict.outcomes, verdict.output[-3000:]
            runs[nprocs] = verdict, time.monotonic() - started
        return runs[nprocs]
    return get


def _layer(crs: str, nprocs: int, snapshots: Path) -> list[str]:
    # At some moments of the suite the ranks reach no consistent cut (seen inside test_p2p_buf's
    # probe tests and test_rma's fence tests, not yet understood): such a checkpoint fails after
    # the quiesce timeout and the job goes on; 15 s rather than the default 600 keeps this short.
    return [str(BIN / "mpirun"), "-am", "ft-enable-cr", "--mca", "crs", crs, "--mca",
            "snapc_crcp_quiesce_timeout", "15", "--mca", "snapc_base_global_snapshot_dir",
            str(snapshots), "-np", str(nprocs)]


def _checkpoint(job: subprocess.Popen[str], failures: list[str]) -> Path | None:
    """One checkpoint of the running job: its global snapshot directory, or None (the reason
    added to ``failures``) when the coordinator refused this moment (a test holding what cannot
    be saved, as a shared-memory window), gave up on it, or the job had already ended."""
    res = subprocess.run([tool("ompi-checkpoint"), str(job.pid)], capture_output=True,
                         text=True, timeout=300)
    if res.returncode != 0:
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
        failures.append(res.stderr.strip())
        return None
    return Path(res.stdout.split()[-1])


def _random_moments(count: int, run_time: float) -> tuple[str, list[float]]:
    """``count`` moments (seconds after the start) inside the first 60 % of a run that takes
    ``run_time`` without the layer, and how to get them again."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    return f"seed {seed}", sorted(rng.uniform(1.5, max(2.0, 0.6 * run_time))
                                  for _ in range(count))


def _checkpoints_at(job: subprocess.Popen[str], moments: list[float],
                    failures: list[str]) -> Iterator[Path | None]:
    """A checkpoint of the running job at each of ``moments`` (seconds from now), until it
    ends: each one's global snapshot directory, or None where it failed."""
    start = time.monotonic()
    for at in moments:
        time.sleep(max(0.0, start + at - time.monotonic()))
        if job.poll() is not None:
            return
        yield _checkpoint(job, failures)


BOTH_IMAGES = [("blcr", 2), pytest.param("mtcp", 2, marks=pytest.mark.long)]


@pytest.mark.parametrize(("crs", "nprocs"), BOTH_IMAGES)
def test_suite_checkpointed_while_it_runs_keeps_its_verdict(
        tmp_path: Path, suite: Path, plain_long_run, crs: str, nprocs: int) -> None:
    plain, plain_time = plain_long_run(nprocs)
    seed, moments = _random_moments(3, plain_time)
    taken: list[Path] = []
    failures: list[str] = []

    def during(job: subprocess.Popen[str]) -> None:
        taken.extend(g for g in _checkpoints_at(job, moments, failures) if g is not None)

    layer = run_module(_layer(crs, nprocs, tmp_path / "snapshots"), suite, LONG_RUN,
                       tmp_path / "layer", python=str(BIN / "python"), timeout=900,
                       during=during)
    assert taken, f"no checkpoint taken at {moments} ({seed}): {failures}"
    diffs = layer.differences(plain)
    assert not diffs, (f"{seed}, checkpoints at {moments}\n" + "\n".join(diffs[:20])
                       + "\n" + layer.output[-3000:])


@pytest.mark.parametrize(("crs", "nprocs"), BOTH_IMAGES)
def test_suite_killed_and_restarted_keeps_its_verdict(
        tmp_path: Path, suite: Path, plain_long_run, crs: str, nprocs: int) -> None:
    plain, plain_time = plain_long_run(nprocs)
    seed, moments = _random_moments(5, plain_time)
    failures: list[str] = []

    def during(job: subprocess.Popen[str]) -> tuple[int | None, str]:
        # the first of these moments the coordinator accepts
        gdir = next((g for g in _checkpoints_at(job, moments, failures) if g is not None), None)
        assert gdir is not None, f"no checkpoint taken at {moments} ({seed}): {failures}"
        tree = kill_tree(job.pid)  # hydra's ranks run in sessions of their own
        job.wait()
        reap(tree)  # their PIDs free again for the restored ranks
        again = subprocess.run([tool("ompi-restart"), str(gdir)], cwd=suite,
                               capture_output=True, text=True, timeout=900)
        return again.returncode, again.stdout + again.stderr

    layer = run_module(_layer(crs, nprocs, tmp_path / "snapshots"), suite, LONG_RUN,
                       tmp_path / "layer", python=str(BIN / "python"), timeout=900,
                       during=during)
    diffs = layer.differences(plain)
    assert not diffs, (f"{seed}, checkpoints at {moments}\n" + "\n".join(diffs[:20])
                       + "\n" + layer.output[-3000:])
