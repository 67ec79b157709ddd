"""Bad input to the tools, as a user would give it: exactly one line on stderr naming the problem,
no traceback, a non-zero exit, nothing launched, and every existing snapshot byte-for-byte as it
was. Real processes, real snapshots; each test has its own control directory (conftest) and a
private HOME, so the real per-user parameter file is never read."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ROOT, run, tool, tree_digest
from crs.snapshot import META_FILE, Meta
from helpers import start_under_pycrs

LOOP = str(ROOT / "examples" / "numpy_loop.py")

# Saves a numpy array; restarted, it says so and ends at once (so a restart that should have
# been refused shows up on stdout instead of running on). Started afresh a second time (a
# relaunch that lost its state), it says that and ends too.
APP = textwrap.dedent('''
    import os, sys, time
    import numpy as np
    import crs

    @crs.on_checkpoint
    def save():
        return {"n": n, "field": field}

    state = crs.restored()
    if state is not None:
        print("restarted", state["n"], float(state["field"].sum()), flush=True)
        sys.exit(0)
    if os.path.exists("started-once"):
        print("started from scratch again", flush=True)
        sys.exit(3)
    open("started-once", "w").close()
    n, field = 0, np.arange(1 << 16, dtype=np.float64)
    while True:
        crs.safe_point()
        n += 1
        time.sleep(0.01)
''')


pytestmark = pytest.mark.usefixtures("private_home")


@pytest.fixture(scope="module")
def base_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real snapshot of a real process, taken once; tests work on copies."""
    d = tmp_path_factory.mktemp("base")
    ctl = tmp_path_factory.mktemp("ctl")
    ctl.chmod(0o700)
    (d / "app.py").write_text(APP)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYCRS_CONTROL_DIR", str(ctl))
        mp.setenv("HOME", str(d))
        for k in list(os.environ):
            if k.startswith("OMPI_MCA_"):
                mp.delenv(k)
        proc = start_under_pycrs([str(d / "app.py")], cwd=d)
        try:
            res = run([tool("opal-checkpoint"), "-w", str(d), str(proc.pid)])
            assert res.returncode == 0, res.stderr
        finally:
            proc.kill()
            proc.communicate()
    snap = d / f"opal_snapshot_{proc.pid}.ckpt"
    assert snap.is_dir()
    return snap


def copy_of(base: Path, where: Path, name: str | None = None) -> Path:
    return Path(shutil.copytree(base, where / (name or base.name), symlinks=True))


def state(where: Path) -> tuple[list[str], dict[str, bytes]]:
    """What must not change: the entries of the snapshot's parent and every file's bytes."""
    return sorted(p.name for p in where.iterdir()), tree_digest(where)


def assert_one_line_error(res: subprocess.CompletedProcess[str], prog: str, *needles: str) -> None:
    assert res.returncode != 0, (res.stdout, res.stderr)
    assert res.stderr.endswith("\n") and res.stderr.count("\n") == 1, res.stderr
    assert re.match(rf"{prog}( [a-z]+)?: ", res.stderr), res.stderr  # "pycrs run: ..." too
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


# -- opal-restart ------------------------------------------------------------------------------
def test_intact_copy_restarts(base_snapshot: Path, tmp_path: Path) -> None:
    """The control case: the copies the other tests spoil are good snapshots."""
    snap = copy_of(base_snapshot, tmp_path)
    before = state(tmp_path)
    res = run([tool("opal-restart"), str(snap)])
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("restarted ")
    assert res.stdout.split()[2] == str(float(sum(range(1 << 16))))
    assert state(tmp_path) == before


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


Records = list[tuple[str, str]]


def rewrite_meta(snap: Path, change: Callable[[Records], Records]) -> None:
    """Edit the metadata records and write it back with its own checksum valid."""
    meta = Meta(change(Meta.read(snap / META_FILE).records))
    (snap / META_FILE).write_text(meta.render())


def set_component(records: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, "nosuch" if k == "OPAL CRS Component" else v) for k, v in records]


SPOIL: dict[str, tuple[Callable[[Path], object], str, str]] = {
    # case: (how to spoil the snapshot, the file named, words in the message)
    "truncated buffers": (lambda s: os.truncate(s / "state.buffers", 1000), "state.buffers",
                          "truncated"),
    "truncated pickle": (lambda s: os.truncate(s / "state.pickle", 10), "state.pickle",
                         "truncated"),
    "emptied buffers": (lambda s: os.truncate(s / "state.buffers", 0), "state.buffers",
                        "truncated"),
    "corrupted buffers": (lambda s: flip(s / "state.buffers"), "state.buffers", "corrupted"),
    "corrupted pickle": (lambda s: flip(s / "state.pickle"), "state.pickle", "corrupted"),
    "extended buffers": (lambda s: s.joinpath("state.buffers").open("ab").write(b"x"),
                         "state.buffers", "longer than recorded"),
    "missing buffers": (lambda s: (s / "state.buffers").unlink(), "state.buffers", "missing"),
    "missing pickle": (lambda s: (s / "state.pickle").unlink(), "state.pickle", "missing"),
    "corrupted metadata": (lambda s: flip(s / META_FILE), META_FILE, "corrupted"),
    "truncated metadata": (lambda s: os.truncate(s / META_FILE, 200), META_FILE, "truncated"),
    "emptied metadata": (lambda s: os.truncate(s / META_FILE, 0), META_FILE, "truncated"),
    "missing metadata": (lambda s: (s / META_FILE).unlink(), META_FILE, "missing"),
    "component not installed": (lambda s: rewrite_meta(s, set_component), META_FILE,
                                "needs CRS component 'nosuch', which is not installed"),
    "no command recorded": (
        lambda s: rewrite_meta(s, lambda r: [x for x in r if x[0] != "Command"]),
        META_FILE, "no Command"),
}


@pytest.mark.parametrize("case", list(SPOIL))
def test_restart_spoiled_snapshot(base_snapshot: Path, tmp_path: Path, case: str) -> None:
    spoil, victim, words = SPOIL[case]
    snap = copy_of(base_snapshot, tmp_path)
    spoil(snap)
    before = state(tmp_path)
    res = run([tool("opal-restart"), str(snap)])
    assert_one_line_error(res, "opal-restart", words)
    if case != "component not installed":  # that message names the component, not the file
        assert str(snap / victim) in res.stderr
    assert res.stdout == ""  # nothing was launched
    assert state(tmp_path) == before


BAD_OPTIONS = {
    "unknown -am set": (["-am", "no-such-set"], "aggregate parameter set 'no-such-set' not found"),
    "malformed boolean": (["--mca", "ft_cr_enabled", "maybe"],
                          "parameter ft_cr_enabled: 'maybe' is not a valid boolean "
                          "(from command line)"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_restart_bad_parameters(base_snapshot: Path, tmp_path: Path, case: str) -> None:
    args, words = BAD_OPTIONS[case]
    snap = copy_of(base_snapshot, tmp_path)
    before = state(tmp_path)
    res = run([tool("opal-restart"), *args, str(snap)])
    assert_one_line_error(res, "opal-restart", words)
    assert res.stdout == ""
    assert state(tmp_path) == before


def test_restart_malformed_boolean_from_environment(base_snapshot: Path, tmp_path: Path) -> None:
    snap = copy_of(base_snapshot, tmp_path)
    before = state(tmp_path)
    res = run([tool("opal-restart"), str(snap)], env={**os.environ, "OMPI_MCA_crs_base_fsync": "2"})
    assert_one_line_error(res, "opal-restart", "crs_base_fsync: '2'",
                          "environment OMPI_MCA_crs_base_fsync")
    assert res.stdout == ""
    assert state(tmp_path) == before


def test_restart_nonexistent_snapshot(tmp_path: Path, private_home: Path) -> None:
    res = run([tool("opal-restart"), str(tmp_path / "opal_snapshot_1.ckpt")])
    assert_one_line_error(res, "opal-restart",
                          f"{tmp_path / 'opal_snapshot_1.ckpt'}: no such snapshot")
    # a bare name is looked up in crs_base_snapshot_dir ($SCRATCH, else the working directory)
    res = run([tool("opal-restart"), "opal_snapshot_2.ckpt"], cwd=tmp_path)
    assert_one_line_error(res, "opal-restart",
                          f"{tmp_path / 'opal_snapshot_2.ckpt'}: no such snapshot")
    scratch = {**os.environ, "SCRATCH": str(private_home)}
    res = run([tool("opal-restart"), "opal_snapshot_2.ckpt"], cwd=tmp_path, env=scratch)
    assert_one_line_error(res, "opal-restart",
                          f"{private_home / 'opal_snapshot_2.ckpt'}: no such snapshot")


def test_restart_file_not_directory(tmp_path: Path) -> None:
    f = tmp_path / "opal_snapshot_1.ckpt"
    f.write_text("not a snapshot\n")
    res = run([tool("opal-restart"), str(f)])
    assert_one_line_error(res, "opal-restart", f"{f}: not a snapshot directory")
    assert f.read_text() == "not a snapshot\n"


# -- opal-checkpoint ---------------------------------------------------------------------------
@pytest.fixture
def sleeper() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


def checkpoint_with_snapshot_in_place(base: Path, where: Path, pid: int | str,
                                      *args: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Run opal-checkpoint against ``pid`` with a snapshot already at its target name; say
    whether that snapshot survived untouched."""
    copy_of(base, where, f"opal_snapshot_{pid}.ckpt")
    before = state(where)
    res = run([tool("opal-checkpoint"), "-w", str(where), *args, str(pid)])
    return res, state(where) == before


def test_checkpoint_non_numeric_pid(tmp_path: Path) -> None:
    res = run([tool("opal-checkpoint"), "-w", str(tmp_path), "12ab"])
    assert_one_line_error(res, "opal-checkpoint", "PID must be a number, not '12ab'")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_pid_that_does_not_exist(base_snapshot: Path, tmp_path: Path) -> None:
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # can never be a process
    res, untouched = checkpoint_with_snapshot_in_place(base_snapshot, tmp_path, pid)
    assert_one_line_error(res, "opal-checkpoint", f"no process with PID {pid}")
    assert untouched


def test_checkpoint_pid_of_ended_process(base_snapshot: Path, tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    res, untouched = checkpoint_with_snapshot_in_place(base_snapshot, tmp_path, gone.pid)
    assert_one_line_error(res, "opal-checkpoint", str(gone.pid))
    assert untouched


def test_checkpoint_process_not_under_pycrs(base_snapshot: Path, tmp_path: Path,
                                            sleeper: subprocess.Popen[bytes]) -> None:
    """Asked for an in-process component, a process not under pycrs is an error (without
    --mca crs, blcr saves it from outside: tests/test_blcr_states.py)."""
    res, untouched = checkpoint_with_snapshot_in_place(base_snapshot, tmp_path, sleeper.pid,
                                                       "--mca", "crs", "self")
    assert_one_line_error(res, "opal-checkpoint",
                          f"process {sleeper.pid} is not running under pycrs")
    assert untouched
    assert sleeper.poll() is None  # and it was left alone


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process as another user")
def test_checkpoint_process_of_another_user(base_snapshot: Path, tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"], user="nobody")
    try:
        res, untouched = checkpoint_with_snapshot_in_place(base_snapshot, tmp_path, other.pid)
        assert_one_line_error(res, "opal-checkpoint",
                              f"process {other.pid} belongs to another user")
        assert untouched
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_checkpoint_bad_parameters(base_snapshot: Path, tmp_path: Path, case: str,
                                   sleeper: subprocess.Popen[bytes]) -> None:
    args, words = BAD_OPTIONS[case]
    res, untouched = checkpoint_with_snapshot_in_place(base_snapshot, tmp_path, sleeper.pid, *args)
    assert_one_line_error(res, "opal-checkpoint", words)
    assert untouched


@pytest.fixture
def loop(tmp_path: Path) -> subprocess.Popen[str]:
    """examples/numpy_loop.py running under pycrs, long enough for any test."""
    proc = start_under_pycrs([LOOP, "1000000", "0.01"], cwd=tmp_path)
    yield proc
    proc.kill()
    proc.communicate()


@pytest.mark.parametrize("crs,words", [
    ("bogus", "unknown CRS component bogus (installed: "),
    ("^self", "no CRS component can checkpoint process"),
])
def test_checkpoint_unusable_component(loop: subprocess.Popen[str], tmp_path: Path,
                                       crs: str, words: str) -> None:
    where = tmp_path / "snaps"
    good = run([tool("opal-checkpoint"), "-w", str(where), str(loop.pid)])
    assert good.returncode == 0, good.stderr
    before = state(where)
    res = run([tool("opal-checkpoint"), "-w", str(where), "--mca", "crs", crs, str(loop.pid)])
    assert_one_line_error(res, "opal-checkpoint", f"checkpoint of process {loop.pid} failed", words)
    assert state(where) == before
    # the process goes on, and still takes a good checkpoint
    assert loop.poll() is None
    again = run([tool("opal-checkpoint"), "-w", str(where), str(loop.pid)])
    assert again.returncode == 0, again.stderr
    assert loop.poll() is None


# -- usage mistakes and pycrs ------------------------------------------------------------------
@pytest.mark.parametrize("args,words", [
    (["opal-checkpoint"], "required: PID"),
    (["opal-checkpoint", "--frobnicate", "1"], "unrecognized arguments: --frobnicate"),
    (["opal-checkpoint", "--term", "--stop", "1"], "not allowed with argument"),
    (["opal-restart"], "required: SNAPSHOT"),
    (["pycrs"], "required: command"),
    (["pycrs", "frobnicate"], "invalid choice: 'frobnicate'"),
    (["pycrs", "run"], "required"),
    (["pycrs", "run", "no-such-program-pycrs"], "program not found: no-such-program-pycrs"),
    (["pycrs", "run", "-am", "no-such-set", "true"],
     "aggregate parameter set 'no-such-set' not found"),
    (["pycrs", "run", "--mca", "ft_cr_enabled", "maybe", "true"],
     "ft_cr_enabled: 'maybe' is not a valid boolean (from command line)"),
    (["pycrs", "info", "-am", "no-such-set"], "aggregate parameter set 'no-such-set' not found"),
    (["pycrs", "info", "--mca", "crs_base_fsync", "maybe"], "crs_base_fsync: 'maybe'"),
])
def test_usage_mistakes(args: list[str], words: str) -> None:
    res = run([tool(args[0]), *args[1:]])
    assert_one_line_error(res, args[0], words)
    assert res.stdout == ""


@pytest.mark.parametrize("args,says", [
    (["pycrs"], "Run a program with checkpoint/restart enabled, or list the CRS components"),
    (["pycrs", "run"], "Run a program with checkpoint/restart enabled:"),
    (["pycrs", "info"], "List the CRS components"),
    (["opal-checkpoint"], "Checkpoint one process into a local snapshot"),
    (["opal-restart"], "Verify a local snapshot and restart its process"),
    (["ompi-checkpoint"], "Checkpoint a running MPI job"),
    (["ompi-restart"], "Verify a global snapshot and restart its MPI job"),
    (["mpirun"], "mpirun (pycrs): run an MPI job with "),  # then the real launcher's help
    (["pycrs-mpirun"], "mpirun (pycrs): run an MPI job with "),
])
def test_help_says_what_the_tool_does(args: list[str], says: str) -> None:
    res = run([tool(args[0]), *args[1:], "--help"])
    assert res.returncode == 0, res.stderr
    assert says in " ".join(res.stdout.split()), res.stdout


def test_bad_per_user_file(private_home: Path) -> None:
    conf = private_home / ".pycrs" / "mca-params.conf"
    conf.parent.mkdir()
    conf.write_text("crs = self\nthis line has no equals sign\n")
    for args in (["pycrs", "info"], ["opal-restart", "x"], ["opal-checkpoint", "1"],
                 ["pycrs", "run", "true"]):
        res = run([tool(args[0]), *args[1:]])
        assert_one_line_error(res, args[0], f"{conf}:2:", "this line has no equals sign")
    conf.write_bytes(b"\xff\xfe binary \x00\n")
    res = run([tool("pycrs"), "info"])
    assert_one_line_error(res, "pycrs", str(conf))
