"""Tests that run inside the ranks of an MPI job: ``mpiexec -n 3 python -m pytest --with-mpi
tests/mpi/...`` (pytest-mpi), started by a test of the ordinary suite that asserts the ranks
passed (test_crcp_layer.py). The ordinary suite does not collect this directory itself
(tests/conftest.py)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_control_dir() -> None:
    """tests/conftest.py gives every test a control directory of its own; nothing here talks to
    a pycrs endpoint, and the ranks making pytest's temporary directories at once would race."""
