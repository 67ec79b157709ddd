"""The whole C/R cycle as an ordinary user (issue 13 part 5): every command runs as ``nobody``
(``setpriv``) with a HOME, control directory and working directory of its own. An ordinary user
cannot choose PIDs, so opal-restart (and every rank of ompi-restart) restores into a user
namespace plus PID namespace of its own, where the process has its original PID and thread IDs,
its uid, and no capabilities.

Run as root, the tests give nobody a copy of this environment's venv whose interpreter nobody may
run (the one the venv points at may sit under /root); run as an ordinary user, they run as that
user with the venv as it is.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import APPS
from helpers import Stream, kill_tree, wait_until

HERE = Path(__file__).resolve().parent
PY_APP = HERE / "mtcp_programs" / "py_app.py"
STEPS, MIB = "6000", "32"  # some 10 s: the checkpoint comes 1 s in
MPI_APP = APPS / "mpi_transparent.py"
MPI_STEPS, MPI_DELAY = "1200", "0.005"
TIMEOUT = 300


class User:
    """Commands as the unprivileged user, in ``work``, with the venv in ``bin``."""

    def __init__(self, root: Path, bin_dir: Path, prefix: list[str], uid: int,
                 src: Path | None = None) -> None:
        self.work, self.bin, self.prefix, self.uid = root / "work", bin_dir, prefix, uid
        self.env = {"HOME": str(root / "home"), "PYCRS_CONTROL_DIR": str(root / "ctl"),
                    "PATH": f"{bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8"}
        # the programs it runs, and pycrs itself: copies it may read when given (src)
        self.py_app, self.mpi_app = (src / PY_APP.name, src / MPI_APP.name) if src else \
            (PY_APP, MPI_APP)
        if src:
            self.env["PYTHONPATH"] = str(src)

    def argv(self, args: list[str]) -> list[str]:
        return [*self.prefix, "env", "-i", *(f"{k}={v}" for k, v in self.env.items()), *args]

    def run(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(list(args)), cwd=self.work, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(list(args)), cwd=self.work, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _user_tree(into: Path) -> Path:
    """pycrs's packages (with their built libraries) and the test programs, copied where the
    user may read them: the tree they come from may sit in a directory only its owner enters (a
    fresh clone under ``mktemp -d``), and the venv's editable install points there."""
    src = into / "src"
    for package in ("crs", "snapc"):
        shutil.copytree(HERE.parent / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for program in (PY_APP, MPI_APP):
        shutil.copy2(program, src / program.name)
    return src


def _user_venv(into: Path) -> Path:
    """A copy of this venv that runs on an interpreter nobody may run: /usr/bin's of the same
    minor version (the venv's compiled modules fit it). Returns its bin directory."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not os.access(system, os.X_OK):
        pytest.skip(f"no {system} for nobody to run (this venv's interpreter is under "
                    f"{Path(sys.base_prefix)})")
    venv = into / "venv"
    shutil.copytree(sys.prefix, venv, symlinks=True)
    cfg = venv / "pyvenv.cfg"
    cfg.write_text(re.sub(r"(?m)^home = .*$", f"home = {system.parent}", cfg.read_text()))
    bin_dir = venv / "bin"
    (bin_dir / "python3").unlink()
    (bin_dir / "python3").symlink_to(system)
    old = f"#!{Path(sys.prefix) / 'bin' / 'python'}"
    for script in bin_dir.iterdir():  # console scripts: onto the copy's interpreter
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        first, _, rest = data.partition(b"\n")
        if first.decode(errors="replace").startswith(old):
            script.write_bytes(f"#!{bin_dir / 'python'}\n".encode() + rest)
    for path in [venv, *venv.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    return bin_dir


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    # not under pytest's base directory, which pytest keeps at mode 0700 (other runs too)
    root = Path(tempfile.mkdtemp(prefix="pycrs-nonroot-"))
    try:
        for d in ("home", "ctl", "work"):
            (root / d).mkdir()
        (root / "ctl").chmod(0o700)
        if os.geteuid() != 0:
            yield User(root, Path(sys.prefix) / "bin", [], os.geteuid())
            return
        if shutil.which("setpriv") is None:
            pytest.skip("no setpriv (util-linux) to run the tests as nobody")
        nobody = pwd.getpwnam("nobody")
        bin_dir = _user_venv(root)
        src = _user_tree(root)
        for path in [src, *src.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        root.chmod(0o755)
        for d in ("home", "ctl", "work"):
            os.chown(root / d, nobody.pw_uid, nobody.pw_gid)
        yield User(root, bin_dir, ["setpriv", "--reuid=nobody", "--regid=nogroup",
                                   "--clear-groups"], nobody.pw_uid, src)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def userns_allowed(user: User) -> None:
    res = user.run("python", "-c", "from crs.plugins.blcr.restore import "
                   "no_restore_without_privilege as f; print(f(12345) or '')")
    assert res.returncode == 0, res.stderr
    if res.stdout.strip():
        pytest.skip(f"this kernel cannot restore without privilege: {res.stdout.strip()}")


def ns_pids(pid: int) -> list[int]:
    """NSpid of ``pid``: its PID here, then in each nested PID namespace."""
    status = Path(f"/proc/{pid}/status").read_text()
    return [int(x) for x in re.search(r"^NSpid:\s*(.*)$", status, re.M).group(1).split()]


def caps_and_uid(pid: int) -> tuple[set[str], int]:
    status = Path(f"/proc/{pid}/status").read_text()
    held = r"^(Cap(?:Inh|Prm|Eff|Amb)):\s*0*([1-9a-f]\w*)$"  # not the bounding set
    caps = {m.group(1) for m in re.finditer(held, status, re.M)}
    return caps, int(re.search(r"^Uid:\s*(\d+)", status, re.M).group(1))


def expected(user: User) -> tuple[str, bytes]:
    """py_app's stdout and file from an uninterrupted run as the user."""
    res = user.run("python", str(user.py_app), STEPS, "ref.txt", MIB)
    assert res.returncode == 0, res.stderr
    return res.stdout, (user.work / "ref.txt").read_bytes()


def start_and_checkpoint(user: User, component: str, out: str) -> tuple[int, list[int]]:
    """py_app started by the user (plainly for blcr, under ``pycrs run`` for mtcp),
    checkpointed into snaps/ a second after it is ready, then SIGKILLed: its PID and TIDs."""
    under = ["pycrs", "run", "--mca", "crs", "mtcp"] if component == "mtcp" else []
    app = user.start(*under, "python", str(user.py_app), STEPS, out, MIB)
    pid = app.pid  # setpriv, env and pycrs run exec the program
    try:
        Stream(app.stdout, name="py_app").wait_for(rb"^READY$", TIMEOUT, "py_app")
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        if component == "mtcp":
            wait_until((user.work.parent / "ctl" / f"mtcp-{pid}.sock").exists, "mtcp's socket")
        time.sleep(1.0)
        ck = user.run("opal-checkpoint", "--mca", "crs", component, "-w", "snaps", str(pid))
        assert ck.returncode == 0, ck.stderr
        assert app.poll() is None, "the program ended before the checkpoint"
    finally:
        app.kill()
        app.communicate(timeout=TIMEOUT)
    return pid, tids


def restored(user: User, snap: str) -> tuple[subprocess.Popen[str], Stream, int]:
    """opal-restart -v SNAP, once the process runs: opal-restart, its stderr, the process's PID
    here."""
    restart = user.start("opal-restart", "-v", snap)
    err = Stream(restart.stderr, name="opal-restart")
    here = int(err.wait_for(rb"restored process (\d+)", TIMEOUT, "opal-restart").group(1))
    return restart, err, here


def ends_as_uninterrupted(user: User, restart: subprocess.Popen[str], err: Stream, out: str,
                          ref: tuple[str, bytes]) -> None:
    """opal-restart ends with status 0, and py_app's output and file are the reference's."""
    stdout, _ = restart.communicate(timeout=TIMEOUT)
    assert restart.returncode == 0, err.text
    assert stdout == ref[0].replace("READY\n", "")
    assert (user.work / out).read_bytes() == ref[1]


@pytest.mark.parametrize("component", ["blcr", "mtcp"])
def test_checkpoint_kill_restart_as_an_ordinary_user(user: User, component: str,
                                                     userns_allowed: None) -> None:
    """py_app (numpy, three threads, a file written line by line), started by the user,
    checkpointed, SIGKILLed and restarted by the same user: it ends as an uninterrupted run,
    its PID and thread IDs the original ones in its namespace, its uid the user's, no
    capabilities."""
    ref = expected(user)
    out = f"out-{component}.txt"
    pid, tids = start_and_checkpoint(user, component, out)
    restart, err, here = restored(user, f"snaps/opal_snapshot_{pid}.ckpt")
    assert ns_pids(here) == [here, pid]
    assert sorted(ns_pids(int(t))[-1] for t in os.listdir(f"/proc/{here}/task")) == tids
    for t in os.listdir(f"/proc/{here}/task"):
        assert caps_and_uid(int(t)) == (set(), user.uid)
    ends_as_uninterrupted(user, restart, err, out, ref)


@pytest.mark.parametrize("component", ["blcr", "mtcp"])
def test_restored_process_checkpointed_again(user: User, component: str,
                                             userns_allowed: None) -> None:
    """A process the user restored (in its own namespace) is checkpointed again by its PID
    outside, killed and restored: back with its original PID there, and it ends as an
    uninterrupted run."""
    ref = expected(user)
    out = f"again-{component}.txt"
    pid, _ = start_and_checkpoint(user, component, out)
    restart, _, here = restored(user, f"snaps/opal_snapshot_{pid}.ckpt")
    try:
        ck = user.run("opal-checkpoint", "--mca", "crs", component, "-w", "snaps2", str(here))
        assert ck.returncode == 0, ck.stderr
    finally:
        os.kill(here, signal.SIGKILL)
        restart.communicate(timeout=TIMEOUT)
    again, err, there = restored(user, f"snaps2/opal_snapshot_{here}.ckpt")
    assert ns_pids(there)[-1] == pid
    ends_as_uninterrupted(user, again, err, out, ref)


@pytest.mark.parametrize("component", ["blcr", "mtcp"])
def test_transparent_mpi_job_as_an_ordinary_user(user: User, component: str,
                                                 userns_allowed: None) -> None:
    """Three unmodified mpi4py ranks under ``mpirun -am ft-enable-cr`` (blcr, mtcp), checkpointed
    with ompi-checkpoint while they run, the whole job SIGKILLed, and ompi-restart: every rank
    comes back in a user and PID namespace of its own, with its original PID there, and the
    ranks talk again (MPICH's shared memory; UCX's shared-memory transports are left out). The
    restarted job is checkpointed and killed in turn, and restarted from that sequence: it
    prints what an uninterrupted run prints."""
    ref = user.run("mpiexec", "-np", "3", "python", str(user.mpi_app), MPI_STEPS, "0")
    assert ref.returncode == 0, ref.stderr
    job = user.start("mpirun", "-am", "ft-enable-cr", "--mca", "crs", component, "-np", "3",
                     "python", str(user.mpi_app), MPI_STEPS, MPI_DELAY)
    gdir = user.work / f"ompi_global_snapshot_{job.pid}.ckpt"
    checkpoint_and_kill(user, job, 0, gdir,
                        lambda: Stream(job.stderr, name="mpirun").wait_for(
                            rb"(?s)(rank \d of 3 started.*){3}", TIMEOUT, "the ranks"))
    restarted = user.start("ompi-restart", gdir.name)  # it becomes the job's mpirun
    sock = user.work.parent / "ctl" / f"mpirun-{restarted.pid}.sock"
    checkpoint_and_kill(user, restarted, 1, gdir,
                        lambda: wait_until(sock.exists, "the restarted job's coordinator"))
    res = user.run("ompi-restart", gdir.name)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ref.stdout
    assert "started" not in res.stderr, res.stderr  # restored, not started again


def checkpoint_and_kill(user: User, job: subprocess.Popen[str], seq: int, gdir: Path,
                        ready: Callable[[], object]) -> None:
    """Once ``ready``, a second later: ompi-checkpoint of ``job`` gives sequence ``seq`` in
    ``gdir``; then the whole job is SIGKILLed."""
    try:
        ready()
        time.sleep(1.0)
        ck = user.run("ompi-checkpoint", str(job.pid))
        assert ck.returncode == 0, ck.stderr
        assert ck.stdout == f"Snapshot Ref.: {seq} {gdir}\n"
        assert job.poll() is None, "the job ended before the checkpoint"
    finally:
        kill_tree(job.pid)
        job.communicate(timeout=TIMEOUT)


FORBIDDEN = """
echo 0 > /proc/sys/user/max_user_namespaces
exec setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all sh -c '
  "$0" -c "import time; print(\\"READY\\", flush=True); time.sleep(120)" > app.out &
  pid=$!
  echo $pid > pid
  for i in $(seq 600); do grep -q READY app.out && break; sleep 0.1; done
  opal-checkpoint --mca crs blcr --term -w snaps $pid > ck.out 2> ck.err; echo $? > ck.rc
  wait $pid
  opal-restart snaps/opal_snapshot_$pid.ckpt > rs.out 2> rs.err; echo $? > rs.rc
' "$0"
"""

FORBIDDEN_JOB = """
echo 0 > /proc/sys/user/max_user_namespaces
exec setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all sh -c '
  mpirun -am ft-enable-cr --mca crs blcr -np 2 "$0" "$1" 3000 0.005 > job.out 2> job.err &
  job=$!
  echo $job > pid
  for i in $(seq 600); do [ $(grep -o started job.err | wc -l) -ge 2 ] && break; sleep 0.1; done
  ompi-checkpoint --term $job > ck.out 2> ck.err; echo $? > ck.rc
  wait $job
  ompi-restart ompi_global_snapshot_$job.ckpt > rs.out 2> rs.err; echo $? > rs.rc
' "$0" "$1"
"""


def in_forbidding_namespace(script: str, where: Path, *args: str) -> None:
    """Run ``script`` (sh) in a user namespace where no further one may be made (its
    max_user_namespaces is 0), as its root, with every capability dropped: a kernel that
    forbids unprivileged user namespaces, as its user sees it."""
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.skip("no unshare or setpriv (util-linux)")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HOME": str(where)}
    res = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", script, *args],
                         cwd=where, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if res.returncode != 0 and not (where / "rs.rc").exists():
        pytest.skip(f"cannot make a user namespace to forbid them in: {res.stderr.strip()}")


def test_a_kernel_that_forbids_it_is_named_before_the_job_ends(tmp_path: Path) -> None:
    """The same for a transparent job: ompi-checkpoint --term warns in one line before the job
    ends (the snapshot is taken), and ompi-restart refuses in one line before it starts
    anything."""
    in_forbidding_namespace(FORBIDDEN_JOB, tmp_path, sys.executable, str(MPI_APP))
    ck_err = (tmp_path / "ck.err").read_text()
    assert (tmp_path / "ck.rc").read_text() == "0\n", ck_err
    # the warning, then the checkpoint's one-line summary
    assert ck_err.count("\n") == 2 and ck_err.startswith("ompi-checkpoint: warning: "), ck_err
    assert ck_err.splitlines()[1].startswith("ompi-checkpoint: checkpoint of job "), ck_err
    assert "forbids the unprivileged user namespace" in ck_err
    gdir = tmp_path / f"ompi_global_snapshot_{(tmp_path / 'pid').read_text().strip()}.ckpt"
    assert (tmp_path / "ck.out").read_text() == f"Snapshot Ref.: 0 {gdir}\n"
    rs_err = (tmp_path / "rs.err").read_text()
    assert (tmp_path / "rs.rc").read_text() == "1\n", rs_err
    assert rs_err.count("\n") == 1 and rs_err.startswith("ompi-restart: choosing PID "), rs_err
    assert "forbids the unprivileged user namespace" in rs_err and "restart as root" in rs_err
    assert (tmp_path / "rs.out").read_text() == ""


def test_a_kernel_that_forbids_it_is_named_before_the_image(tmp_path: Path) -> None:
    """Where the kernel forbids unprivileged user namespaces (here: a user namespace whose
    max_user_namespaces is 0, entered without capabilities), opal-checkpoint says so in one
    line before the image is taken (the checkpoint is still made, and --term ends the
    process), and opal-restart refuses in one line naming why."""
    in_forbidding_namespace(FORBIDDEN, tmp_path, sys.executable)
    pid = int((tmp_path / "pid").read_text())
    ck_err = (tmp_path / "ck.err").read_text()
    assert (tmp_path / "ck.rc").read_text() == "0\n", ck_err
    assert ck_err.count("\n") == 2 and ck_err.startswith("opal-checkpoint: warning: "), ck_err
    assert ck_err.splitlines()[1].startswith("opal-checkpoint: saved process "), ck_err
    assert "forbids the unprivileged user namespace" in ck_err
    assert "only root can restart them" in ck_err
    assert (tmp_path / "snaps" / f"opal_snapshot_{pid}.ckpt").is_dir()
    rs_err = (tmp_path / "rs.err").read_text()
    assert (tmp_path / "rs.rc").read_text() == "1\n", rs_err
    assert rs_err.count("\n") == 1 and "Traceback" not in rs_err, rs_err
    assert rs_err.startswith(f"opal-restart: choosing PID {pid} needs privilege"), rs_err
    assert "forbids the unprivileged user namespace" in rs_err and "restart as root" in rs_err
