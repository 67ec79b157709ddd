"""Bad input to ompi-checkpoint and ompi-restart, as a user would give it: exactly one line on
stderr naming the problem, no traceback, a non-zero exit, nothing launched, and every existing
global snapshot byte-for-byte as it was (every file hashed, and the listing, before and after).

The global snapshot is made once per module by a real 4-rank job (examples/mpi_stencil.py under
our mpirun with -am ft-enable-cr, checkpointed with ompi-checkpoint, then with --term); each
test damages its own copy. MPI jobs run under MPICH (nothing here depends on the MPI flavour).
Every test has its own control directory (conftest) and a private HOME, so the real per-user
parameter file is never read."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import BIN, MPI, ROOT, restarted_at, run, tree_digest
from crs.snapshot import Meta
from helpers import Stream, children, kill_session, wait_for_job_endpoint, wait_for_path
from snapc.storage import META_FILE as GLOBAL_META, GlobalSnapshot

MPICH = MPI("mpich", BIN)
STENCIL = str(ROOT / "examples" / "mpi_stencil.py")
FOREVER, DELAY = "100000000", "0.02"  # the stencil runs until it is ended
RANK_META = "snapshot_meta.data"
CHECKPOINT, RESTART = MPICH.tool("ompi-checkpoint"), MPICH.tool("ompi-restart")

# An MPI loop with safe points until the file 'quiet' appears (every rank agrees on when), then
# no safe point at all: it says so in 'is-quiet' and waits for the file 'go', then ends normally.
QUIET_APP = textwrap.dedent('''
    import os, time
    from mpi4py import MPI
    import crs

    comm = MPI.COMM_WORLD
    step = 0

    @crs.on_checkpoint
    def save():
        return step

    while not comm.allreduce(os.path.exists("quiet"), op=MPI.LOR):
        crs.safe_point()
        step += 1
        time.sleep(0.01)
    comm.Barrier()
    if comm.Get_rank() == 0:
        open("is-quiet", "w").close()
    while not os.path.exists("go"):
        time.sleep(0.02)
    comm.Barrier()
    if comm.Get_rank() == 0:
        print("ended normally at step", step, flush=True)
''')


# -- helpers -----------------------------------------------------------------------------------
def clean_env(ctl: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMPI_MCA_")}
    env.update(PYCRS_CONTROL_DIR=str(ctl), HOME=str(home))
    return env


def private_dir(factory: pytest.TempPathFactory, name: str) -> Path:
    d = factory.mktemp(name)
    d.chmod(0o700)
    return d


def start_job(program: list[str], cwd: Path, np_: int = 4,
              env: dict[str, str] | None = None, crs: str = "") -> subprocess.Popen[str]:
    """Our mpirun in C/R mode in its own session (so that it can be killed whole), snapshots in
    ``cwd``, output in ``cwd``; returns once the job's control endpoint is up."""
    env = env or dict(os.environ)
    cmd = [MPICH.tool("mpirun"), "-am", "ft-enable-cr", "--mca", "snapc_base_global_snapshot_dir",
           str(cwd), *(["--mca", "crs", crs] if crs else []), "-np", str(np_), *program]
    with open(cwd / "job.out", "a") as out, open(cwd / "job.err", "a") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, text=True,
                                start_new_session=True, env=env)
    wait_for_job_endpoint(proc, Path(env["PYCRS_CONTROL_DIR"]),
                          details=lambda: (cwd / "job.err").read_text())
    return proc


def end_job(proc: subprocess.Popen[str]) -> None:
    kill_session(proc.pid)
    proc.wait()


def checkpoint(jobid: int, *extra: str, env: dict[str, str] | None = None) -> tuple[int, Path]:
    res = run([CHECKPOINT, *extra, str(jobid)], env=env)
    assert res.returncode == 0, res.stderr
    m = re.fullmatch(r"Snapshot Ref\.: (\d+) (\S+)\n", res.stdout)
    assert m, res.stdout
    return int(m.group(1)), Path(m.group(2))


def copy_of(base: Path, where: Path, name: str | None = None) -> Path:
    return Path(shutil.copytree(base, where / (name or base.name), symlinks=True))


def state(where: Path) -> tuple[list[str], dict[str, bytes]]:
    """What must not change: every entry under ``where`` (directories too), every file's bytes."""
    return sorted(str(p.relative_to(where)) for p in where.rglob("*")), tree_digest(where)


def assert_one_line_error(res: subprocess.CompletedProcess[str], prog: str, *needles: str,
                          code: int | None = None) -> None:
    assert res.returncode != 0, (res.stdout, res.stderr)
    if code is not None:
        assert res.returncode == code, (res.returncode, res.stderr)
    assert res.stderr.endswith("\n") and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"{prog}: "), res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


def processes_with_env(entry: str) -> list[int]:
    """Live processes whose environment holds ``entry`` ("NAME=value")."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if entry.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def unused_pid() -> int:
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # can never be a process


# -- fixtures ----------------------------------------------------------------------------------
pytestmark = pytest.mark.usefixtures("private_home")


@pytest.fixture(scope="module")
def base_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real global snapshot of a real 4-rank job, sequences 0 (checkpoint) and 1 (--term)."""
    d = tmp_path_factory.mktemp("base")
    env = clean_env(private_dir(tmp_path_factory, "ctl"), d)
    job = start_job([MPICH.python, STENCIL, FOREVER, DELAY], d, env=env)
    try:
        assert checkpoint(job.pid, env=env)[0] == 0
        seq, gdir = checkpoint(job.pid, "--term", env=env)
        assert seq == 1
        # The job ends; its status is not checked here: under MPICH it is sometimes 9, as hydra
        # kills the ranks still finalizing once one rank has exited (quiesce.finalize_and_exit
        # ends a rank with os._exit, which skips MPICH's PMI finalize; reported).
        job.wait(timeout=120)
    finally:
        end_job(job)
    assert gdir == d / f"ompi_global_snapshot_{job.pid}.ckpt"
    assert GlobalSnapshot(gdir).finished == [0, 1]
    assert not list(gdir.glob(".*"))
    return gdir


@dataclass
class LiveJob:
    proc: subprocess.Popen[str]
    ctl: Path
    gdir: Path


@pytest.fixture(scope="module")
def live_job(tmp_path_factory: pytest.TempPathFactory) -> LiveJob:
    """A 4-rank stencil that runs until the module is done, with one finished sequence."""
    d = tmp_path_factory.mktemp("live")
    ctl = private_dir(tmp_path_factory, "ctl")
    env = clean_env(ctl, d)
    job = start_job([MPICH.python, STENCIL, FOREVER, DELAY], d, env=env)
    try:
        _, gdir = checkpoint(job.pid, env=env)
        yield LiveJob(job, ctl, gdir)
    finally:
        end_job(job)


@pytest.fixture
def on_live_job(live_job: LiveJob, monkeypatch: pytest.MonkeyPatch) -> LiveJob:
    """The live job, reachable from this test's tools, and checked unharmed afterwards."""
    monkeypatch.setenv("PYCRS_CONTROL_DIR", str(live_job.ctl))
    before = state(live_job.gdir)
    yield live_job
    assert live_job.proc.poll() is None, "the job is still running"
    assert state(live_job.gdir) == before, "its snapshot is untouched"


# == ompi-restart ==============================================================================
def test_showme_prints_the_command_and_starts_nothing(base_snapshot: Path, tmp_path: Path) -> None:
    """The control case: the copies the other tests spoil are good snapshots."""
    snap = copy_of(base_snapshot, tmp_path)
    before = state(tmp_path)
    res = run([RESTART, "--showme", str(snap)])
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.count("\n") == 1 and "mpirun" in res.stdout and STENCIL in res.stdout
    assert f"PYCRS_RESTART_GLOBAL={snap}" in res.stdout and "PYCRS_RESTART_SEQ=1" in res.stdout
    assert processes_with_env(f"PYCRS_RESTART_GLOBAL={snap}") == []
    assert not list(Path(os.environ["PYCRS_CONTROL_DIR"]).glob("mpirun-*.sock"))
    assert state(tmp_path) == before


def test_showme_command_restarts_the_job(base_snapshot: Path, tmp_path: Path) -> None:
    """What --showme prints is what ompi-restart would run: run by a shell, it restarts the job
    from the newest sequence (not a fresh start of the program)."""
    snap = copy_of(base_snapshot, tmp_path)
    shown = run([RESTART, "--showme", str(snap)])
    assert shown.returncode == 0, shown.stderr
    with subprocess.Popen(["sh", "-c", shown.stdout], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as job:
        try:
            first = Stream(job.stdout, name=str(job.args)).until("step ")[-1]  # type: ignore[arg-type]
        finally:
            end_job(job)
        err = job.stderr.read()  # type: ignore[union-attr]
    assert int(first.split()[1]) > restarted_at(err)


def test_restart_missing_directory(tmp_path: Path, private_home: Path) -> None:
    gone = tmp_path / "ompi_global_snapshot_1.ckpt"
    res = run([RESTART, str(gone)])
    assert_one_line_error(res, "ompi-restart", f"{gone}: no such global snapshot", code=1)
    assert res.stdout == ""
    # a bare name is looked up in snapc_base_global_snapshot_dir (here $SCRATCH)
    res = run([RESTART, "ompi_global_snapshot_2.ckpt"], cwd=tmp_path,
              env={**os.environ, "SCRATCH": str(private_home)})
    missing = private_home / "ompi_global_snapshot_2.ckpt"
    assert_one_line_error(res, "ompi-restart", f"{missing}: no such global snapshot")
    assert res.stdout == "" and list(tmp_path.iterdir()) == []


def empty_dir(d: Path) -> Path:
    (d / "empty.ckpt").mkdir()
    return d / "empty.ckpt"


def regular_file(d: Path) -> Path:
    (d / "file.ckpt").write_text("not a snapshot\n")
    return d / "file.ckpt"


NOT_GLOBAL: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    # case: (what to give ompi-restart, given a copy of the snapshot and a scratch dir; words)
    "empty directory": (lambda snap, d: empty_dir(d), "not a global snapshot"),
    "regular file": (lambda snap, d: regular_file(d), "not a global snapshot directory"),
    "a sequence directory": (lambda snap, d: snap / "1", "not a global snapshot"),
    "a rank's local snapshot": (lambda snap, d: snap / "1" / "opal_snapshot_0.ckpt",
                                "not a global snapshot"),
}


@pytest.mark.parametrize("case", list(NOT_GLOBAL))
def test_restart_not_a_global_snapshot(base_snapshot: Path, tmp_path: Path, case: str) -> None:
    make, words = NOT_GLOBAL[case]
    given = make(copy_of(base_snapshot, tmp_path), tmp_path)
    before = state(tmp_path)
    res = run([RESTART, str(given)])
    assert_one_line_error(res, "ompi-restart", f"{given}: {words}", code=1)
    assert res.stdout == ""
    assert state(tmp_path) == before


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def set_component(meta_path: Path, name: str) -> None:
    """Name another CRS component in a rank's metadata, its own checksum kept valid."""
    records = Meta.read(meta_path).records
    meta = Meta([(k, name if k == "OPAL CRS Component" else v) for k, v in records])
    meta_path.write_text(meta.render())


RANK2 = Path("1") / "opal_snapshot_2.ckpt"  # rank 2 of the newest sequence
SPOIL: dict[str, tuple[Callable[[Path], object], Path, str]] = {
    # case: (how to spoil the copy, the path named in the message, words in the message)
    "corrupted metadata": (lambda s: flip(s / GLOBAL_META), Path(GLOBAL_META), "corrupted"),
    "truncated metadata": (lambda s: half(s / GLOBAL_META), Path(GLOBAL_META), "truncated"),
    "emptied metadata": (lambda s: os.truncate(s / GLOBAL_META, 0), Path(GLOBAL_META), "truncated"),
    "missing metadata": (lambda s: (s / GLOBAL_META).unlink(), Path(), "not a global snapshot"),
    "missing rank directory": (lambda s: shutil.rmtree(s / RANK2), RANK2, "no such snapshot"),
    "missing sequence directory": (lambda s: shutil.rmtree(s / "1"), Path("1"),
                                   "no such sequence directory"),
    "truncated rank file": (lambda s: os.truncate(s / RANK2 / "state.buffers", 1000),
                            RANK2 / "state.buffers", "truncated"),
    "emptied rank file": (lambda s: os.truncate(s / RANK2 / "state.buffers", 0),
                          RANK2 / "state.buffers", "truncated"),
    "corrupted rank file": (lambda s: flip(s / RANK2 / "state.buffers"),
                            RANK2 / "state.buffers", "corrupted"),
    "missing rank file": (lambda s: (s / RANK2 / "state.buffers").unlink(),
                          RANK2 / "state.buffers", "missing"),
    "corrupted rank metadata": (lambda s: flip(s / RANK2 / RANK_META), RANK2 / RANK_META,
                                "corrupted"),
    "truncated rank metadata": (lambda s: half(s / RANK2 / RANK_META), RANK2 / RANK_META,
                                "truncated"),
    "rank component not installed": (lambda s: set_component(s / RANK2 / RANK_META, "nosuch"),
                                     RANK2, "needs CRS component 'nosuch', which is not installed"),
}


@pytest.mark.parametrize("case", list(SPOIL))
def test_restart_spoiled_snapshot(base_snapshot: Path, tmp_path: Path, case: str) -> None:
    spoil, victim, words = SPOIL[case]
    snap = copy_of(base_snapshot, tmp_path)
    spoil(snap)
    before = state(tmp_path)
    res = run([RESTART, str(snap)])
    assert_one_line_error(res, "ompi-restart", f"{snap / victim}: ", words, code=1)
    assert res.stdout == ""  # nothing was launched
    assert state(tmp_path) == before
    if victim.parts[:1] == ("1",):  # the damage is confined to sequence 1: 0 is still good
        older = run([RESTART, "--showme", "--seq", "0", str(snap)])
        assert older.returncode == 0, older.stderr
        assert "PYCRS_RESTART_SEQ=0" in older.stdout
        assert state(tmp_path) == before


def unfinished_5(snap: Path) -> None:
    """Sequence 5 looks complete on disk but was never committed (no Finished Seq record)."""
    shutil.copytree(snap / "1", snap / "5")


@pytest.mark.parametrize("args,prepare,words,code", [
    (["--seq", "5"], unfinished_5,
     "sequence 5 exists but never finished (finished sequences: 0, 1)", 1),
    (["--seq", "5"], lambda s: (s / "5").mkdir(), "sequence 5 exists but never finished", 1),
    (["--seq", "7"], None, "sequence 7 does not exist (finished sequences: 0, 1)", 1),
    (["--seq", "-1"], None, "sequence -1 does not exist", 1),
    (["--seq", "abc"], None, "argument -s/--seq: invalid int value: 'abc'", 2),
    (["--seq", "1.0"], None, "argument -s/--seq: invalid int value: '1.0'", 2),
    (["-am", "no-such-set"], None, "aggregate parameter set 'no-such-set' not found", 1),
    (["--mca", "crs_base_fsync", "maybe"], None,
     "crs_base_fsync: 'maybe' is not a valid boolean", 1),
    (["--mpirun_opts", '"--oversubscribe'], None, "--mpirun_opts", 2),
    (["--hostfile", "/nonexistent/hosts"], None, "/nonexistent/hosts", 2),
], ids=["unfinished seq", "empty unfinished seq", "no such seq", "negative seq", "non-numeric seq",
        "fractional seq", "unknown -am set", "malformed parameter", "unbalanced mpirun_opts",
        "missing hostfile"])
def test_restart_bad_options(base_snapshot: Path, tmp_path: Path, args: list[str],
                             prepare: Callable[[Path], object] | None, words: str,
                             code: int) -> None:
    snap = copy_of(base_snapshot, tmp_path)
    if prepare:
        prepare(snap)
    before = state(tmp_path)
    res = run([RESTART, *args, str(snap)])
    assert_one_line_error(res, "ompi-restart", words, code=code)
    assert res.stdout == ""
    assert state(tmp_path) == before


def test_restart_with_unfinished_newer_directory_takes_newest_finished(base_snapshot: Path,
                                                                      tmp_path: Path) -> None:
    """Without --seq, a directory that never finished is passed over, not taken as newest."""
    snap = copy_of(base_snapshot, tmp_path)
    unfinished_5(snap)
    before = state(tmp_path)
    res = run([RESTART, "--showme", str(snap)])
    assert res.returncode == 0, res.stderr
    assert "PYCRS_RESTART_SEQ=1 " in res.stdout
    assert state(tmp_path) == before


# == ompi-checkpoint ===========================================================================
@pytest.mark.parametrize("args,words,code", [
    ([], "JOBID is required", 2),
    (["12ab"], "JOBID must be a number, not '12ab'", 2),
    (["--", "-5"], "no job with PID -5", 1),
    (["--term", "--stop", "1"], "argument --stop: not allowed with argument --term", 2),
    (["--frobnicate", "1"], "unrecognized arguments: --frobnicate", 2),
    (["1", "2"], "unrecognized arguments: 2", 2),
], ids=["no JOBID", "non-numeric", "negative", "term and stop", "unknown option", "two JOBIDs"])
def test_checkpoint_usage_mistakes(args: list[str], words: str, code: int) -> None:
    res = run([CHECKPOINT, *args])
    assert_one_line_error(res, "ompi-checkpoint", words, code=code)
    assert res.stdout == ""


def checkpoint_with_snapshot_in_place(base: Path, where: Path, jobid: int | str,
                                      *args: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Run ompi-checkpoint on ``jobid`` with a global snapshot already at the name that job's
    snapshots would have; say whether that snapshot survived untouched."""
    copy_of(base, where, f"ompi_global_snapshot_{jobid}.ckpt")
    before = state(where)
    res = run([CHECKPOINT, "--mca", "snapc_base_global_snapshot_dir", str(where), *args,
               str(jobid)])
    return res, state(where) == before


def test_checkpoint_jobid_that_does_not_exist(base_snapshot: Path, tmp_path: Path) -> None:
    pid = unused_pid()
    res, untouched = checkpoint_with_snapshot_in_place(base_snapshot, tmp_path, pid)
    assert_one_line_error(res, "ompi-checkpoint", f"no job with PID {pid}", code=1)
    assert untouched


def test_checkpoint_jobid_of_ended_process(base_snapshot: Path, tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    res, untouched = checkpoint_with_snapshot_in_place(base_snapshot, tmp_path, gone.pid)
    assert_one_line_error(res, "ompi-checkpoint", f"no job with PID {gone.pid}", code=1)
    assert untouched


def test_checkpoint_jobid_of_a_process_that_is_not_mpirun(base_snapshot: Path,
                                                         tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        res, untouched = checkpoint_with_snapshot_in_place(base_snapshot, tmp_path, sleeper.pid)
        assert_one_line_error(res, "ompi-checkpoint",
                              f"job {sleeper.pid} is not running under pycrs",
                              "mpirun -am ft-enable-cr", code=1)
        assert untouched
        assert sleeper.poll() is None  # and it was left alone
    finally:
        sleeper.kill()
        sleeper.wait()


def test_checkpoint_plain_mpirun_job(base_snapshot: Path, tmp_path: Path) -> None:
    """A job started with our mpirun without C/R: mpirun is the real launcher, no endpoint."""
    job = subprocess.Popen([MPICH.tool("mpirun"), "-np", "2", MPICH.python, "-c",
                            "import time; from mpi4py import MPI; time.sleep(300)"],
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        res, untouched = checkpoint_with_snapshot_in_place(base_snapshot, tmp_path, job.pid)
        assert_one_line_error(res, "ompi-checkpoint", f"job {job.pid} is not running under pycrs",
                              "mpirun -am ft-enable-cr", code=1)
        assert untouched
        assert job.poll() is None
    finally:
        end_job(job)  # type: ignore[arg-type]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process as another user")
def test_checkpoint_job_of_another_user(base_snapshot: Path, tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "300"], user="nobody")
    try:
        res, untouched = checkpoint_with_snapshot_in_place(base_snapshot, tmp_path, other.pid)
        assert_one_line_error(res, "ompi-checkpoint", f"job {other.pid} belongs to another user",
                              code=1)
        assert untouched
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


# -- on a running C/R job: refused, and the job and its snapshot are unharmed ----------------
def test_checkpoint_pid_of_a_rank(on_live_job: LiveJob) -> None:
    """A rank's PID (or the real launcher's) is not the JOBID: the tool names the job's."""
    job = on_live_job.proc
    ranks = [int(p.stem.split("-")[1]) for p in on_live_job.ctl.glob("crs-*.sock")]
    assert len(ranks) == 4
    launcher = children(job.pid)
    assert len(launcher) == 1
    for pid in (ranks[0], launcher[0]):
        res = run([CHECKPOINT, str(pid)])
        assert_one_line_error(res, "ompi-checkpoint", f"process {pid} ",
                              f"job {job.pid}", f"ompi-checkpoint {job.pid}", code=1)


@pytest.mark.parametrize("args,words,code", [
    (["--term", "--stop"], "argument --stop: not allowed with argument --term", 2),
    (["-am", "no-such-set"], "aggregate parameter set 'no-such-set' not found", 1),
    (["--mca", "snapc_base_registration_timeout", "soon"],
     "snapc_base_registration_timeout: 'soon' is not a valid integer", 1),
], ids=["term and stop", "unknown -am set", "malformed parameter"])
def test_checkpoint_bad_options_on_a_live_job(on_live_job: LiveJob, args: list[str], words: str,
                                              code: int) -> None:
    res = run([CHECKPOINT, *args, str(on_live_job.proc.pid)])
    assert_one_line_error(res, "ompi-checkpoint", words, code=code)
    assert res.stdout == ""


def test_checkpoint_unknown_component_on_a_live_job(on_live_job: LiveJob) -> None:
    """Every rank refuses the component: one line, the job goes on, nothing is left behind."""
    job = on_live_job.proc
    res = run([CHECKPOINT, "--mca", "crs", "bogus", str(job.pid)])
    assert_one_line_error(res, "ompi-checkpoint", f"checkpoint of job {job.pid} failed",
                          "unknown CRS component bogus", code=1)
    assert res.stdout == ""
    assert not list(on_live_job.gdir.glob(".*"))


def test_checkpoint_other_image_component_on_a_live_job(on_live_job: LiveJob) -> None:
    """A job started with -am ft-enable-cr alone runs its ranks under the MPI layer for blcr:
    asked for mtcp, every rank says in one line that they are saved by blcr; the job goes on,
    nothing is left behind."""
    job = on_live_job.proc
    res = run([CHECKPOINT, "--mca", "crs", "mtcp", str(job.pid)])
    assert_one_line_error(res, "ompi-checkpoint", f"checkpoint of job {job.pid} failed",
                          "saved whole by blcr, not by mtcp", code=1)
    assert res.stdout == ""
    assert not list(on_live_job.gdir.glob(".*"))


@pytest.mark.parametrize("component", ["blcr", "mtcp"])
def test_checkpoint_image_component_on_a_job_started_for_self(tmp_path: Path,
                                                              component: str) -> None:
    """The image-based components save MPI ranks only in a job started with the MPI layer (not
    with --mca crs self): one line says so at once; the job goes on, nothing is left behind."""
    job = start_job([MPICH.python, STENCIL, FOREVER, DELAY], tmp_path, np_=2,
                    crs="self")
    try:
        res = run([CHECKPOINT, "--mca", "crs", component, str(job.pid)])
        assert_one_line_error(res, "ompi-checkpoint", f"checkpoint of job {job.pid} failed",
                              f"{component}: cannot save the ranks of a job started without the "
                              f"MPI layer", f"mpirun -am ft-enable-cr --mca crs {component}",
                              code=1)
        assert res.stdout == ""
        assert job.poll() is None
        assert not list(tmp_path.glob("ompi_global_snapshot_*"))
    finally:
        end_job(job)


# -- the job ends while the request waits ------------------------------------------------------
def test_checkpoint_job_ends_before_ranks_register(tmp_path: Path) -> None:
    """Ranks that never register (not Python): the request waits for them; the job ends."""
    job = start_job(["sh", "-c", "while [ ! -e go ]; do sleep 0.05; done"], tmp_path, np_=2)
    try:
        with subprocess.Popen([CHECKPOINT, "-s", str(job.pid)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) as tool:
            err = Stream(tool.stderr, name=str(tool.args))  # type: ignore[arg-type]
            lines = err.until("waiting for ranks to register")
            (tmp_path / "go").touch()
            lines += err.rest()
            assert tool.wait(timeout=120) == 1
            assert tool.stdout.read() == ""  # type: ignore[union-attr]
        assert job.wait(timeout=120) == 0
    finally:
        end_job(job)
    assert "Traceback" not in "".join(lines)
    assert lines[-1] == (f"ompi-checkpoint: checkpoint of job {job.pid} failed: the job ended "
                         "before the checkpoint started\n")
    assert all(ln.startswith("ompi-checkpoint: ") and "failed" not in ln for ln in lines[:-1])
    assert not (tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt").exists()


def test_checkpoint_job_ends_while_request_waits(tmp_path: Path) -> None:
    """The ranks agree on a safe point they never reach: the application stops calling safe
    points and ends normally. The tool says that the job ended; the earlier snapshot stays."""
    (tmp_path / "app.py").write_text(QUIET_APP)
    job = start_job([MPICH.python, str(tmp_path / "app.py")], tmp_path)
    try:
        _, gdir = checkpoint(job.pid)
        before = state(gdir)
        (tmp_path / "quiet").touch()
        wait_for_path(tmp_path / "is-quiet", job, timeout=120)
        with subprocess.Popen([CHECKPOINT, "-s", str(job.pid)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) as tool:
            err = Stream(tool.stderr, name=str(tool.args))  # type: ignore[arg-type]
            lines = err.until("ranks meet at safe point")
            (tmp_path / "go").touch()
            lines += err.rest()
            assert tool.wait(timeout=120) == 1
            assert tool.stdout.read() == ""  # type: ignore[union-attr]
        assert job.wait(timeout=120) == 0, (tmp_path / "job.err").read_text()
    finally:
        end_job(job)
    assert "ended normally" in (tmp_path / "job.out").read_text()
    assert "Traceback" not in "".join(lines)
    assert all(ln.startswith("ompi-checkpoint: ") and "failed" not in ln for ln in lines[:-1])
    assert lines[-1].startswith(f"ompi-checkpoint: checkpoint of job {job.pid} failed: ")
    assert state(gdir) == before
    assert not list(gdir.glob(".*"))
    assert "the job ended" in lines[-1], lines[-1]


# -- ompi-checkpoint -l ------------------------------------------------------------------------
NO_JOBS = "no checkpoint-enabled jobs of this user are running\n"


def listed(res: subprocess.CompletedProcess[str]) -> dict[int, str]:
    """JOBID -> snapshot directory, from the table ompi-checkpoint -l prints."""
    assert res.returncode == 0 and res.stderr == "", res.stderr
    header, *rows = res.stdout.splitlines()
    assert header.split() == ["JOBID", "RANKS", "LAST", "SEQ", "STATE", "SNAPSHOT", "DIRECTORY"]
    return {int(r.split()[0]): r.split()[-1] for r in rows}


def test_list_no_jobs() -> None:
    res = run([CHECKPOINT, "-l"])
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout == NO_JOBS


def test_list_two_jobs_then_one_then_none(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a = start_job([MPICH.python, STENCIL, FOREVER, DELAY], a_dir, np_=2)
    try:
        b = start_job([MPICH.python, STENCIL, FOREVER, DELAY], b_dir, np_=2)
        try:
            assert listed(run([CHECKPOINT, "-l"])) == {
                a.pid: str(a_dir / f"ompi_global_snapshot_{a.pid}.ckpt"),
                b.pid: str(b_dir / f"ompi_global_snapshot_{b.pid}.ckpt")}
            end_job(a)  # SIGKILL: its endpoint stays behind, stale
            assert (Path(os.environ["PYCRS_CONTROL_DIR"]) / f"mpirun-{a.pid}.sock").exists()
            assert list(listed(run([CHECKPOINT, "-l"]))) == [b.pid]
        finally:
            end_job(b)
    finally:
        end_job(a)
    assert run([CHECKPOINT, "-l"]).stdout == NO_JOBS
