"""Shared helpers: real processes started under pycrs, real tools, a private control directory."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"


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
    """A HOME of the test's own and no inherited OMPI_MCA_* settings: the user's real parameter
    files and environment never leak into a test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for k in list(os.environ):
        if k.startswith("OMPI_MCA_"):
            monkeypatch.delenv(k)
    return home


def run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing text output (with a safety-net timeout)."""
    kw.setdefault("timeout", 300)
    return subprocess.run(args, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def wait_for_endpoint(proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Wait until a process started under pycrs serves its control endpoint."""
    sock = Path(os.environ["PYCRS_CONTROL_DIR"]) / f"crs-{proc.pid}.sock"
    deadline = time.monotonic() + timeout
    while not sock.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no control endpoint {sock}")
        time.sleep(0.02)


def start_under_pycrs(args: list[str], cwd: Path, **kw: object) -> subprocess.Popen[str]:
    """`pycrs run python ARGS...` in the background, once its endpoint is up."""
    proc = subprocess.Popen([tool("pycrs"), "run", sys.executable, *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]
    wait_for_endpoint(proc)
    return proc


def tree_digest(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes, to show a snapshot was not touched."""
    return {str(p.relative_to(path)): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file()}


def session_pids(sid: int) -> list[int]:
    """Every live process in session ``sid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL a whole job (launcher, ranks and all) started with start_new_session=True: what
    a node failure or a batch system's kill does to it."""
    deadline = time.monotonic() + 30
    while pids := session_pids(sid):
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        assert time.monotonic() < deadline, f"processes survive: {pids}"
        time.sleep(0.05)


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
