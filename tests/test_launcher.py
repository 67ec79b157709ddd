"""The real MPI launcher behind our mpirun: finding it, and how it really behaves.

Every launch here is a real job of this interpreter's mpi4py under MPICH's hydra or Open MPI's
mpiexec, 3-4 ranks oversubscribed on whatever cores there are. A flavour whose wheel (and
mpi4py) is not installed in this environment is skipped. What the launch tests pin down
(exit statuses, which signals reach the ranks) is what our front-end relies on.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

import snapc.launcher as launcher_mod
from helpers import alive, eventually, proc_state, wait_for_path
from snapc.launcher import (
    LauncherNotFound,
    RealLauncher,
    find_real_launcher,
    flavour_of,
    is_python_script,
    rank_from_env,
    wanted_flavour,
)

FLAVOURS = ("mpich", "openmpi")

# Exit status of the launcher when one rank is killed by SIGKILL: hydra reports the signal
# number itself, prterun the shell's 128 + signal.
KILLED_STATUS = {"mpich": 9, "openmpi": 128 + 9}

RANK = r'''
import json, os, signal, sys, time
from mpi4py import MPI

out = os.environ["T_OUT"]
mode = os.environ["T_MODE"]
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append("USR1"))
signal.signal(signal.SIGTERM, lambda s, f: got.append("TERM"))
signal.signal(signal.SIGCONT, lambda s, f: got.append("CONT"))
keys = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
        "T_VAR")
info = {"rank": rank, "size": size, "pid": os.getpid(),
        "sum": comm.allreduce(rank), "lib": MPI.Get_library_version(),
        "env": {k: os.environ[k] for k in keys if k in os.environ}}
with open(f"{out}/ready.{rank}", "w") as f:
    json.dump(info, f)
comm.Barrier()

def wait_for(what, limit=60.0):
    end = time.monotonic() + limit
    while what not in got and time.monotonic() < end:
        time.sleep(0.02)
    with open(f"{out}/got.{rank}", "w") as f:
        json.dump(got, f)

if mode == "exit3":
    if rank == 1:
        os._exit(3)
    time.sleep(60)
elif mode == "kill9":
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
elif mode == "usr1":
    wait_for("USR1")
    comm.Barrier()
elif mode == "term":
    wait_for("TERM")
    comm.Barrier()  # a rank leaving without MPI_Finalize would have the others killed
'''


def _skip_reason(flavour: str) -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed here"
    try:
        metadata.distribution(flavour)
    except metadata.PackageNotFoundError:
        return f"the {flavour} wheel is not installed here"
    return None


@pytest.fixture(params=FLAVOURS)
def launcher(request: pytest.FixtureRequest) -> RealLauncher:
    """The real launcher of each installed MPI wheel."""
    reason = _skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    found = find_real_launcher(request.param)
    assert found.flavour == request.param
    return found


class Job:
    """One real MPI job of the RANK script; kills whatever is left of it at the end."""

    def __init__(self, launcher: RealLauncher, tmp_path: Path, mode: str, nprocs: int,
                 env: dict[str, str] | None = None) -> None:
        self.launcher, self.out, self.nprocs = launcher, tmp_path, nprocs
        script = tmp_path / "rank.py"
        script.write_text(RANK)
        full = dict(os.environ, T_OUT=str(tmp_path), T_MODE=mode, **(env or {}))
        full.update(launcher.env(full, single_node=True))
        here = []  # 4 ranks on 2 cores, as root: Open MPI must be told
        if launcher.flavour == "openmpi":
            here = ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
        args = [launcher.path, *here, *launcher.forward_env_args(full),
                "-n", str(nprocs), sys.executable, str(script)]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, env=full, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)

    def ranks(self, timeout: float = 60.0) -> list[dict]:
        """What each rank reported once MPI was up (waits for all of them)."""
        files = [self.out / f"ready.{r}" for r in range(self.nprocs)]
        for f in files:
            wait_for_path(f, self.proc, "the ranks' ready files", timeout,
                          details=self.proc.communicate)
        time.sleep(0.05)  # the files are written in one go; let the last one be closed
        return [json.loads(f.read_text()) for f in files]

    def got(self, rank: int) -> list[str]:
        path = self.out / f"got.{rank}"
        return json.loads(path.read_text()) if path.exists() else []

    def wait(self, timeout: float = 30.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def rank_pids(self) -> list[int]:
        pids = []
        for r in range(self.nprocs):
            f = self.out / f"ready.{r}"
            if f.exists():
                try:
                    pids.append(json.loads(f.read_text())["pid"])
                except ValueError:
                    pass
        return pids

    def kill(self) -> None:
        for pid in [self.proc.pid, *self.rank_pids()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.communicate()


@pytest.fixture
def job(tmp_path: Path):
    jobs: list[Job] = []

    def start(launcher: RealLauncher, mode: str, nprocs: int = 4, **kw: object) -> Job:
        j = Job(launcher, tmp_path, mode, nprocs, **kw)  # type: ignore[arg-type]
        jobs.append(j)
        return j

    yield start
    for j in jobs:
        j.kill()


# --- finding the launcher ---------------------------------------------------------------------

def test_default_launcher_is_a_real_binary_of_the_wanted_mpi() -> None:
    wanted = wanted_flavour()
    if wanted is None:
        pytest.skip("no MPI wheel installed here")
    found = find_real_launcher()
    assert found.flavour == wanted
    assert not is_python_script(found.path)
    assert Path(found.path).read_bytes()[:4] == b"\x7fELF"
    assert flavour_of(found.path) == wanted


def test_python_scripts_are_never_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A console script (ours, as installed over bin/mpirun) is skipped under every launcher
    name, and not even run: this one would claim to be hydra."""
    wanted = wanted_flavour()
    if wanted is None:
        pytest.skip("no MPI wheel installed here")
    real = find_real_launcher()
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("mpiexec.hydra", "mpiexec", "mpirun"):
        script = fake / name
        script.write_text(f"#!{sys.executable}\nprint('HYDRA build details')\n")
        script.chmod(0o755)
        assert flavour_of(str(script)) is None
        with pytest.raises(LauncherNotFound, match="Python script"):
            find_real_launcher(str(script))
    monkeypatch.setattr(launcher_mod, "search_dirs",
                        lambda: [str(fake), os.path.dirname(real.path)])
    assert find_real_launcher() == real


def test_the_running_program_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever name our front-end runs under, it never finds itself."""
    if wanted_flavour() is None:
        pytest.skip("no MPI wheel installed here")
    first = find_real_launcher()
    monkeypatch.setattr(sys, "argv", [first.path])
    with pytest.raises(LauncherNotFound):
        find_real_launcher(first.path)
    try:
        second = find_real_launcher()
    except LauncherNotFound:  # no other copy of it (Open MPI's mpirun may be ours by now)
        return
    assert second.flavour == first.flavour
    assert not os.path.samefile(second.path, first.path)


def test_explicit_choice_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(LauncherNotFound, match="not found"):
        find_real_launcher(str(tmp_path / "nowhere" / "mpiexec"))
    monkeypatch.setenv(launcher_mod.ENV_LAUNCHER, str(tmp_path / "nowhere"))
    with pytest.raises(LauncherNotFound, match="nowhere"):
        find_real_launcher()
    not_mpi = tmp_path / "true"
    not_mpi.symlink_to("/bin/true")
    with pytest.raises(LauncherNotFound, match="neither"):
        find_real_launcher(str(not_mpi))
    monkeypatch.delenv(launcher_mod.ENV_LAUNCHER)
    if wanted_flavour() is not None:
        real = find_real_launcher()
        monkeypatch.setenv(launcher_mod.ENV_LAUNCHER, real.path)
        assert find_real_launcher() == real


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_missing_flavour_is_reported(flavour: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for an MPI that is not installed names what was searched, in one line."""
    monkeypatch.setenv("PATH", "/nonexistent")
    if _skip_reason(flavour) is None:
        assert find_real_launcher(flavour).flavour == flavour
        return
    try:
        found = find_real_launcher(flavour)
    except LauncherNotFound as exc:
        msg = str(exc)
        assert "\n" not in msg and "mpiexec" in msg and flavour in msg.replace(" ", "").lower()
    else:  # an MPI installed beside this Python without its wheel (a system MPI)
        assert found.flavour == flavour


def test_wanted_flavour_follows_mpi4py_settings() -> None:
    assert wanted_flavour({"MPI4PY_MPIABI": "openmpi"}) == "openmpi"
    assert wanted_flavour({"MPI4PY_MPIABI": "Open-MPI"}) == "openmpi"
    assert wanted_flavour({"MPI4PY_MPIABI": "mpich"}) == "mpich"
    assert wanted_flavour({"MPI4PY_LIBMPI": "/x/lib/libmpi.so.40"}) == "openmpi"
    assert wanted_flavour({"MPI4PY_LIBMPI": "/x/lib/libmpi.so.12"}) == "mpich"


def test_rank_from_env() -> None:
    assert rank_from_env({"PMI_RANK": "2", "PMI_SIZE": "4"}) == (2, 4)
    assert rank_from_env({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "3",
                          "PMIX_RANK": "1"}) == (1, 3)
    assert rank_from_env({}) is None
    assert rank_from_env({"PMI_RANK": "x", "PMI_SIZE": "4"}) is None
    assert rank_from_env({"PMI_RANK": "4", "PMI_SIZE": "4"}) is None
    assert rank_from_env({"OMPI_COMM_WORLD_RANK": "0"}) is None


def test_launcher_additions_give_way_to_the_user() -> None:
    ompi = RealLauncher("/nowhere/bin/mpiexec", "openmpi")
    assert ompi.base_args() == []  # C/R mode adds no option the plain launcher would not get
    assert ompi.env({}) == {}
    assert ompi.env({}, single_node=True) == {"OMPI_MCA_btl": "^ofi"}
    assert ompi.env({"OMPI_MCA_btl": "self,sm"}, single_node=True) == {}
    assert ompi.forward_env_args({"PYCRS_X": "1", "HOME": "/"}) == ["-x", "PYCRS_X"]
    assert RealLauncher("/nowhere/bin/mpiexec.hydra", "mpich").forward_env_args(
        {"PYCRS_X": "1"}) == []


# --- real jobs ----------------------------------------------------------------------------------

def test_hello_allreduce_oversubscribed(launcher: RealLauncher, job) -> None:
    """4 ranks on fewer cores, as root where we are: right MPI, right ranks, our variables."""
    j = job(launcher, "hello", 4, env={"T_VAR": "from-the-launcher"})
    ranks = j.ranks()
    rc, out, err = j.wait()
    assert rc == 0, err
    name = {"mpich": "MPICH", "openmpi": "Open MPI"}[launcher.flavour]
    for r, info in enumerate(ranks):
        assert (info["rank"], info["size"], info["sum"]) == (r, 4, 6)
        assert name in info["lib"]
        assert rank_from_env(info["env"]) == (r, 4)
        assert info["env"]["T_VAR"] == "from-the-launcher"


def test_nonzero_exit_ends_the_job_with_its_status(launcher: RealLauncher, job) -> None:
    j = job(launcher, "exit3", 3)
    pids = [info["pid"] for info in j.ranks()]
    rc, _, _ = j.wait(timeout=30)  # the others would sleep 60 s
    # hydra SIGKILLs the other ranks and then reports either status: 3 or 9 at random
    assert rc == 3 if launcher.flavour == "openmpi" else rc in (3, 9)
    assert eventually(lambda: not any(alive(p) for p in pids), 10)


def test_killed_rank_ends_the_job(launcher: RealLauncher, job) -> None:
    j = job(launcher, "kill9", 3)
    pids = [info["pid"] for info in j.ranks()]
    rc, _, _ = j.wait(timeout=30)  # the others would sleep 60 s
    assert rc == KILLED_STATUS[launcher.flavour]
    assert eventually(lambda: not any(alive(p) for p in pids), 10)


def test_sigusr1_reaches_every_rank(launcher: RealLauncher, job) -> None:
    j = job(launcher, "usr1", 3)
    j.ranks()
    os.kill(j.proc.pid, signal.SIGUSR1)
    rc, _, err = j.wait()
    assert rc == 0, err
    assert all("USR1" in j.got(r) for r in range(3))


def test_sigterm_reaches_every_rank_and_ends_the_job(launcher: RealLauncher, job) -> None:
    """hydra passes SIGTERM on and waits for the ranks; prterun sends SIGCONT, SIGTERM and, a
    moment later, SIGKILL."""
    j = job(launcher, "term", 3)
    pids = [info["pid"] for info in j.ranks()]
    os.kill(j.proc.pid, signal.SIGTERM)
    j.wait()
    assert eventually(lambda: not any(alive(p) for p in pids), 10)
    assert all("TERM" in j.got(r) for r in range(3))


def test_sigtstp_and_sigcont(launcher: RealLauncher, job) -> None:
    """prterun stops the ranks on SIGTSTP and passes SIGCONT on; hydra passes neither, so a
    front-end must stop and continue MPICH ranks itself (and with SIGSTOP: the ranks sit in
    sessions of their own, where the kernel drops a default-action SIGTSTP)."""
    j = job(launcher, "usr1", 3)
    pids = [info["pid"] for info in j.ranks()]
    os.kill(j.proc.pid, signal.SIGTSTP)
    if launcher.flavour == "openmpi":
        assert eventually(lambda: all(proc_state(p) == "T" for p in pids), 10)
    else:
        time.sleep(1)
        assert not any(proc_state(p) == "T" for p in pids)
        os.kill(pids[0], signal.SIGTSTP)
        time.sleep(0.5)
        assert proc_state(pids[0]) != "T"
    os.kill(j.proc.pid, signal.SIGCONT)
    assert eventually(lambda: not any(proc_state(p) == "T" for p in pids), 10)
    os.kill(j.proc.pid, signal.SIGUSR1)
    rc, _, err = j.wait()
    assert rc == 0, err
    conts = ["CONT" in j.got(r) for r in range(3)]
    assert all(conts) if launcher.flavour == "openmpi" else not any(conts)
