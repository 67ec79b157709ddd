"""pytest fixtures for the emulated cluster. A test module that uses them loads this plugin:

    pytest_plugins = ["cluster.fixtures"]

* ``cluster_module`` (module scope): 3 compute nodes and a head node, set up once for the module,
  torn down after it (also when a test failed).
* ``cluster`` (per test): the same cluster; after the test every cut link is healed and every
  process the test left in a node is killed (daemons such as SLURM's are kept).
* ``slurm_module`` / ``slurm``: SLURM on that cluster (installed with apt-get the first time);
  after each test its jobs are cancelled and slurmds a test killed are started again.

Skipped, with the reason, when not root, when a tool is missing or when namespaces cannot be
created here (root in a container without CAP_SYS_ADMIN).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from .nodes import Cluster, ClusterError, cleanup_leftovers
from .slurm import Slurm, SlurmUnavailable

NODES = int(os.environ.get("PYCRS_CLUSTER_NODES", "3"))


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the emulated cluster needs root (it creates network, UTS and mount namespaces)"
    for tool in ("unshare", "nsenter", "ip", "mount"):
        if shutil.which(tool) is None:
            return f"the emulated cluster needs {tool} (util-linux / iproute2)"
    # Root without the capability (a container, a seccomp profile) cannot make namespaces.
    probe = subprocess.run(["unshare", "--net", "--uts", "--mount", "--", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode:
        return f"the emulated cluster cannot create namespaces here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def cluster_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    cleanup_leftovers()
    c = Cluster(tmp_path_factory.mktemp("cluster"), NODES, shared=[tmp_path_factory.getbasetemp()])
    try:
        c.start()
    except ClusterError as e:
        pytest.fail(f"cannot set up the emulated cluster: {e}")
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def cluster(cluster_module: Cluster) -> Iterator[Cluster]:
    yield cluster_module
    cluster_module.reset()


@pytest.fixture(scope="module")
def slurm_module(cluster_module: Cluster) -> Iterator[Slurm]:
    s = Slurm(cluster_module)
    try:
        s.start()
    except SlurmUnavailable as e:
        s.stop()
        pytest.skip(f"SLURM unavailable: {e}")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def slurm(slurm_module: Slurm, cluster_module: Cluster) -> Iterator[Slurm]:
    yield slurm_module
    slurm_module.reset()
    cluster_module.reset()
