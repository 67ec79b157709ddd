"""mpi4py's own test suite as the yardstick of an invisible MPI layer: a chosen subset of its
modules (fast ones, each exercising an object kind the layer virtualizes) gives the same verdict,
test by test and rank by rank, under ``mpirun -am ft-enable-cr --mca crs blcr`` as under the
plain launcher. No checkpoint is taken: this is the layer alone. The whole suite, module by
module, by hand: ``python -m tests.peer.suite --np 2 --crs blcr`` (tests/peer/suite.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import BIN
from peer.suite import run_module, suite_dir

# about 2 min in all, plain and layer, on the 2-core dev VM
MODULES = ["test_attributes", "test_cco_ngh_obj", "test_cco_obj_inter", "test_comm",
           "test_comm_topo", "test_errhandler", "test_errorcode", "test_exceptions", "test_file",
           "test_grequest", "test_group", "test_handle", "test_objmodel", "test_subclass",
           "test_util_pkl5", "test_win"]


@pytest.fixture(scope="module")
def suite() -> Path:
    return suite_dir()


@pytest.mark.parametrize("module", MODULES)
def test_module_gives_the_plain_launchers_verdict(tmp_path: Path, suite: Path,
                                                  module: str) -> None:
    python = str(BIN / "python")
    plain = run_module([str(BIN / "mpiexec"), "-n", "2"], suite, module, tmp_path / "plain",
                       python=python, timeout=300)
    layer = run_module([str(BIN / "mpirun"), "-am", "ft-enable-cr", "--mca", "crs", "blcr",
                        "-np", "2"], suite, module, tmp_path / "layer", python=python,
                       timeout=300)
    assert plain.outcomes and plain.returncode == 0, plain.output[-3000:]
    diffs = layer.differences(plain)
    assert not diffs, "\n".join(diffs[:20]) + "\n" + layer.output[-3000:]
