"""Shared fixtures and helpers: the MPI installations, the tools, a private control directory
and HOME for every test, the session of processes a test starts. Starting, reading, waiting for
and ending processes: helpers.py."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import Session

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/mpi/ runs inside the ranks of a job (pytest --with-mpi under mpiexec, started by
    the tests that assert its outcome), not in this process."""
    if collection_path.name == "mpi" and not config.getoption("--with-mpi", False):
        return True
    return None


@dataclass(frozen=True)
class MPI:
    """One MPI installation to run jobs with: a venv holding an MPI wheel, mpi4py and pycrs."""

    flavour: str
    bin: Path

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def tool(self, name: str) -> str:
        return str(self.bin / name)

    @property
    def launcher_options(self) -> list[str]:
        """What a user adds on this machine: Open MPI refuses to oversubscribe 2 cores, and to
        run as root."""
        if self.flavour != "openmpi":
            return []
        return ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])

    def plain(self, n: int) -> list[str]:
        """The plain launcher of this MPI, without pycrs."""
        return [self.tool("mpiexec"), *self.launcher_options, "-n", str(n)]


def _openmpi_bin() -> Path | None:
    given = os.environ.get("PYCRS_OPENMPI_BIN")
    path = Path(given) if given else ROOT / ".venv-openmpi" / "bin"
    return path if (path / "python").exists() else None


@pytest.fixture(params=["mpich", "openmpi"], scope="module")
def mpi(request: pytest.FixtureRequest) -> MPI:
    """Each MPI job test runs under MPICH (this venv) and Open MPI (`make test` builds its venv)."""
    if request.param == "mpich":
        return MPI("mpich", BIN)
    path = _openmpi_bin()
    if path is None:
        pytest.skip("no Open MPI environment: `make test` creates .venv-openmpi")
    return MPI("openmpi", path)


def tool(name: str) -> str:
    """Path of a pycrs console script in the test environment."""
    return str(BIN / name)


@pytest.fixture(autouse=True)
def private_control_dir(tmp_path_factory: pytest.TempPathFactory,
                        monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own control directory, inherited by every process it starts."""
    d = tmp_path_factory.mktemp("ctl")
    d.chmod(0o700)
    monkeypatch.setenv("PYCRS_CONTROL_DIR", str(d))
    return d


@pytest.fixture
def private_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own and no inherited OMPI_MCA_* settings or $SCRATCH (the default
    snapshot directory): the user's real parameter files and environment never leak into a
    test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SCRATCH", raising=False)
    for k in list(os.environ):
        if k.startswith("OMPI_MCA_"):
            monkeypatch.delenv(k)
    return home


@pytest.fixture
def session() -> Iterator[Session]:
    """The processes a test starts (helpers.Session), killed at its end."""
    s = Session()
    try:
        yield s
    finally:
        s.cleanup()


def run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing text output (with a safety-net timeout)."""
    kw.setdefault("timeout", 300)
    return subprocess.run(args, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def tree_digest(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes, to show a snapshot was not touched."""
    return {str(p.relative_to(path)): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file()}


def restarted_at(stderr: str) -> int:
    """The step a restarted example says it resumed from ("restarted at step N" on stderr)."""
    import re

    m = re.search(r"restarted at step (\d+)", stderr)
    assert m, stderr
    return int(m.group(1))


def expected_after(reference: list[str], step: int) -> list[str]:
    """What a run resumed after ``step`` must print: the later progress lines and the result."""
    later = [ln for ln in reference if ln.startswith("step ") and int(ln.split()[1]) > step]
    return later + [reference[-1]]
