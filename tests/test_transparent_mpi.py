"""Transparent checkpoint of unmodified mpi4py ranks, end to end as a user drives it:
``mpirun -am ft-enable-cr --mca crs blcr`` (or ``mtcp``), ``ompi-checkpoint JOBID`` at a random
moment (the program has no safe points and knows nothing of pycrs), the whole job SIGKILLed,
``ompi-restart``; the restarted job must print exactly what an uninterrupted run prints. MPICH
only (Open MPI is refused at launch, tested here too)."""
from __future__ import annotations

import ctypes
import functools
import os
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import APPS, BIN, MPI, _openmpi_bin, run
from crs.snapshot import LocalSnapshot
from helpers import descendants, kill_tree, proc_state, reap, wait_for_job_endpoint, wait_until
from test_snapc_e2e import restart

MPICH = MPI("mpich", BIN)
APP = str(APPS / "mpi_transparent.py")
STEPS, DELAY = "1200", "0.005"  # about 8 s per run on the 2-core dev VM
LONG_STEPS = "4000"  # longer than crs_base_startup_timeout (10 s) on any machine
PR_SET_CHILD_SUBREAPER = 36
STARTED = re.compile(r"mpi_transparent: rank \d+ of \d+ started")


@functools.cache
def reference(np_: int, steps: str = STEPS) -> tuple[str, ...]:
    """The output of an uninterrupted run under the plain launcher, without pycrs."""
    res = run([*MPICH.plain(np_), MPICH.python, APP, steps, "0"])
    assert res.returncode == 0, res.stderr
    return tuple(res.stdout.splitlines())


class Job:
    """A job under our mpirun with the MPI layer, in a session of its own (so that it can be
    killed whole); its stderr is read as it comes (the ranks say when they have started)."""

    def __init__(self, cmd: list[str], cwd: Path, ranks: int) -> None:
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.ranks = ranks
        JOBS.append(self)
        self.err: list[str] = []
        self.out = ""
        self.changed = threading.Condition()
        self.readers = [threading.Thread(target=self._read_err, daemon=True),
                        threading.Thread(target=self._read_out, daemon=True)]
        for t in self.readers:
            t.start()
        wait_for_job_endpoint(self.proc, details=self.finish)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_err(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            with self.changed:
                self.err.append(line)
                self.changed.notify_all()

    def _read_out(self) -> None:
        self.out = self.proc.stdout.read()  # type: ignore[union-attr]

    def started(self) -> int:
        return len(STARTED.findall("".join(self.err)))  # the ranks' lines may share one

    def wait_started(self) -> None:
        """Until every rank is in its loop (MPI initialized)."""
        with self.changed:
            while self.started() < self.ranks:
                assert self.proc.poll() is None, self.finish()
                self.changed.wait(0.5)

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        for t in self.readers:
            t.join(timeout=60)
        return code, self.out, "".join(self.err)

    def kill(self) -> None:
        """SIGKILL the whole job: mpirun's session and every process under it (hydra starts
        the ranks in sessions of their own, where they would run on without their launcher)."""
        tree = kill_tree(self.pid)
        self.finish()
        # Orphans come to this process (a subreaper, see below): reap them, so that their PIDs
        # are free for the restored ranks.
        reap(tree)


JOBS: list[Job] = []


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    """Processes orphaned by a killed job come to the test process, which reaps them: the
    original ranks' PIDs must be free again for ompi-restart (where the machine's init does not
    reap orphans, their zombies would keep them)."""
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.fixture(autouse=True)
def no_job_left() -> object:
    """A failed test kills what it started (a job hung on a failure would slow every later
    one)."""
    yield
    while JOBS:
        job = JOBS.pop()
        if job.proc.poll() is None:
            job.kill()


def start(where: Path, np_: int, *args: str, mpi: MPI = MPICH, crs: str = "blcr",
          steps: str = STEPS, mca: tuple[str, ...] = ()) -> Job:
    cmd = [mpi.tool("mpirun"), *mpi.launcher_options, "-am", "ft-enable-cr",
           *(["--mca", "crs", crs] if crs else []), *mca,
           "--mca", "snapc_base_global_snapshot_dir", str(where), "-np", str(np_), mpi.python,
           APP, steps, DELAY, *args]
    return Job(cmd, where, np_)


def checkpoint(mpi: MPI, jobid: int, *extra: str, job: Job | None = None) -> tuple[int, Path]:
    """ompi-checkpoint JOBID; on failure the job's own stderr is shown too."""
    res = run([mpi.tool("ompi-checkpoint"), *extra, str(jobid)])
    if res.returncode != 0 and job is not None:
        with job.changed:
            job.changed.wait(2)
        res.stderr += "--- job stderr:\n" + "".join(job.err)
    assert res.returncode == 0, res.stderr
    m = re.fullmatch(r"Snapshot Ref\.: (\d+) (\S+)\n", res.stdout)
    assert m, res.stdout
    return int(m.group(1)), Path(m.group(2))


def at_random_moment(job: Job) -> None:
    job.wait_started()
    time.sleep(random.uniform(0.0, 1.5))


def restarted(gdir: Path, np_: int, *extra: str, steps: str = STEPS) -> None:
    """ompi-restart of ``gdir``: the job ends as an uninterrupted run, with restored ranks
    (none of them starts the program again)."""
    res = restart(MPICH, gdir, *extra)
    assert res.returncode == 0, res.stderr
    assert tuple(res.stdout.splitlines()) == reference(np_, steps)
    assert not STARTED.search(res.stderr), res.stderr


def checkpoint_refused(job: Job, *needles: str, options: tuple[str, ...] = ()) -> None:
    """ompi-checkpoint of the running ``job`` fails (exit 1) in one line saying ``needles``."""
    res = run([MPICH.tool("ompi-checkpoint"), *options, str(job.pid)])
    assert res.returncode == 1, res.stderr
    one_line_error(res.stderr, "ompi-checkpoint", *needles)


def goes_on_to_the_end(job: Job, where: Path, np_: int, steps: str = STEPS) -> None:
    """After refused checkpoints: no sequence was left in the job's global snapshot directory,
    and the job ends with the uninterrupted run's output."""
    gdir = where / f"ompi_global_snapshot_{job.pid}.ckpt"
    assert not list(gdir.glob(".*")) and not list(gdir.glob("[0-9]*"))
    code, out, err = job.finish()
    assert code == 0, err
    assert tuple(out.splitlines()) == reference(np_, steps)


def one_line_error(stderr: str, prog: str, *needles: str) -> None:
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"{prog}: ") and "Traceback" not in stderr, stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)


def refused_at_launch(where: Path, name: str, value: str, *words: str) -> None:
    """``mpirun -am ft-enable-cr --mca NAME VALUE`` (in ``where``) refuses the value in one line
    naming the parameter and ``words``, exits non-zero and leaves nothing in ``where``."""
    before = sorted(where.rglob("*"))
    res = run([str(BIN / "mpirun"), "-am", "ft-enable-cr", "--mca", name, value, "-np", "2",
               MPICH.python, "-c", "pass"], cwd=where)
    assert res.returncode != 0 and res.stdout == ""
    one_line_error(res.stderr, "mpirun", name, *words)
    assert sorted(where.rglob("*")) == before


# -- checkpoint, kill, restart -----------------------------------------------------------------
def test_the_first_line_of_the_readme(tmp_path: Path) -> None:
    """mpirun -am ft-enable-cr with no other option, an unmodified program, ompi-checkpoint at a
    random moment, the job killed, ompi-restart: the uninterrupted run's output. The ranks
    registered no callback, so they are saved whole (blcr, this user may trace its processes).
    Asked for in the ranks' first crs_base_startup_timeout seconds, the checkpoint waits until
    then for callbacks that may still come: the job runs longer than that."""
    job = start(tmp_path, 3, crs="", steps=LONG_STEPS)
    at_random_moment(job)
    seq, gdir = checkpoint(MPICH, job.pid, job=job)
    ranks = sorted((gdir / str(seq)).iterdir())
    assert all("OPAL CRS Component: blcr" in (p / "snapshot_meta.data").read_text() for p in ranks)
    job.kill()
    restarted(gdir, 3, steps=LONG_STEPS)


def test_checkpoint_kill_restart(tmp_path: Path) -> None:
    job = start(tmp_path, 3)
    at_random_moment(job)
    seq, gdir = checkpoint(MPICH, job.pid, job=job)
    assert (seq, gdir) == (0, tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt")
    ranks = sorted((gdir / "0").iterdir())
    assert [p.name for p in ranks] == [f"opal_snapshot_{r}.ckpt" for r in range(3)]
    assert all("OPAL CRS Component: blcr" in (p / "snapshot_meta.data").read_text() for p in ranks)
    job.kill()
    restarted(gdir, 3)


@pytest.mark.parametrize("np_", [2, 4])
def test_checkpoint_twice_kill_restart_newest_then_seq0(tmp_path: Path, np_: int) -> None:
    job = start(tmp_path, np_)
    at_random_moment(job)
    seq0, gdir = checkpoint(MPICH, job.pid, job=job)
    time.sleep(random.uniform(0.0, 1.5))
    seq1, gdir1 = checkpoint(MPICH, job.pid, job=job)
    assert (seq0, seq1) == (0, 1) and gdir1 == gdir
    job.kill()
    restarted(gdir, np_)
    restarted(gdir, np_, "--seq", "0")


def test_job_goes_on_after_checkpoints(tmp_path: Path) -> None:
    """The continue path: MPI rebuilt in the same job, twice; the run's own output is exact."""
    job = start(tmp_path, 3)
    at_random_moment(job)
    _, gdir = checkpoint(MPICH, job.pid, job=job)
    _, _ = checkpoint(MPICH, job.pid, job=job)
    code, out, err = job.finish()
    assert code == 0, err
    assert tuple(out.splitlines()) == reference(3)
    restarted(gdir, 3)


def test_term_ends_the_job_then_restart(tmp_path: Path) -> None:
    job = start(tmp_path, 3)
    at_random_moment(job)
    _, gdir = checkpoint(MPICH, job.pid, "--term", job=job)
    code, out, err = job.finish()
    assert code == 0, err
    assert out == ""  # ended before its result
    restarted(gdir, 3)


def test_stop_then_sigcont_to_mpirun(tmp_path: Path) -> None:
    job = start(tmp_path, 3)
    at_random_moment(job)
    _, gdir = checkpoint(MPICH, job.pid, "--stop", job=job)
    ranks = [p for p in descendants(job.pid)
             if Path(f"/proc/{p}/comm").read_text().startswith("python")
             and APP in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(ranks) == 3
    wait_until(lambda: all(proc_state(p) == "T" for p in ranks), "the ranks to stop", 30)
    os.kill(job.pid, signal.SIGCONT)
    code, out, err = job.finish()
    assert code == 0, err
    assert tuple(out.splitlines()) == reference(3)
    restarted(gdir, 3)


def test_restarted_job_is_checkpointed_again(tmp_path: Path) -> None:
    """Restart, checkpoint the restarted job, kill it, restart again: the same history."""
    job = start(tmp_path, 3)
    at_random_moment(job)
    _, gdir = checkpoint(MPICH, job.pid, job=job)
    job.kill()
    again = Job([MPICH.tool("ompi-restart"), str(gdir)], tmp_path, 3)
    time.sleep(random.uniform(0.5, 1.5))
    seq, gdir2 = checkpoint(MPICH, again.pid, job=again)  # waits for the restored ranks to register
    assert (seq, gdir2) == (1, gdir)
    again.kill()
    assert not STARTED.search("".join(again.err))
    restarted(gdir, 3)


# -- a restart that cannot succeed ends at once -------------------------------------------------
def flip_byte(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def tree_bytes(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("crs", ["blcr", "mtcp"])
def test_a_corrupted_rank_image_is_refused_before_anything_starts(tmp_path: Path,
                                                                  crs: str) -> None:
    """One flipped byte in one rank's pages.img (checked by its CRCs, not by the snapshot's
    checksums): ompi-restart names the file in one line and launches no rank; the snapshot is
    left as it was."""
    job = start(tmp_path, 3, crs=crs)
    at_random_moment(job)
    _, gdir = checkpoint(MPICH, job.pid, job=job)
    job.kill()
    pages = gdir / "0" / "opal_snapshot_1.ckpt" / "pages.img"
    flip_byte(pages)
    before = tree_bytes(gdir)
    res = restart(MPICH, gdir)
    assert res.returncode == 1 and res.stdout == "", res
    one_line_error(res.stderr, "ompi-restart", str(pages), "corrupted", "checksum mismatch")
    assert tree_bytes(gdir) == before


def test_a_rank_that_cannot_be_restored_ends_the_job(tmp_path: Path) -> None:
    """Rank 1's image verifies, but the file it was writing is gone: its restore fails once the
    other ranks are restored and waiting for it in MPI. mpirun names the rank and the cause in
    one line and ends the job with status 1; no restored rank is left running."""
    job = start(tmp_path, 3, "log")
    at_random_moment(job)
    _, gdir = checkpoint(MPICH, job.pid, job=job)
    pids = [int(LocalSnapshot(p).meta.get("PID") or 0) for p in sorted((gdir / "0").iterdir())]
    assert all(pids), pids
    job.kill()
    (tmp_path / "rank.1.log").unlink()
    res = restart(MPICH, gdir)
    assert res.returncode == 1, res
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(("mpirun:", "opal-restart:"))]
    assert len(lines) == 1 and lines[0].startswith("mpirun: rank 1 could not be restored"), res
    assert str(tmp_path / "rank.1.log") in lines[0] and "Traceback" not in res.stderr, res
    reap(pids)  # restored ranks were ended (orphans come here to be reaped), none runs on
    assert not any(proc_state(pid) for pid in pids)


# -- mtcp: the rank's own kernel writes its image ----------------------------------------------
def test_mtcp_checkpoint_kill_restart(tmp_path: Path) -> None:
    job = start(tmp_path, 3, crs="mtcp")
    at_random_moment(job)
    seq, gdir = checkpoint(MPICH, job.pid, job=job)
    assert (seq, gdir) == (0, tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt")
    ranks = sorted((gdir / "0").iterdir())
    assert [p.name for p in ranks] == [f"opal_snapshot_{r}.ckpt" for r in range(3)]
    for p in ranks:
        meta = (p / "snapshot_meta.data").read_text()
        assert "OPAL CRS Component: mtcp" in meta and "CRCP Transparent: 1" in meta, meta
        assert (p / "pages.img").is_file()
    job.kill()
    restarted(gdir, 3)


def test_mtcp_job_goes_on_then_restarted_job_checkpointed_again(tmp_path: Path) -> None:
    """The continue path with mtcp (MPI rebuilt in the same job, the run's output exact), then
    the restored ranks' kernels serve the next checkpoint: restart, checkpoint the restarted
    job at a random moment, kill it, restart again: the same history."""
    job = start(tmp_path, 2, crs="mtcp")
    at_random_moment(job)
    _, gdir = checkpoint(MPICH, job.pid, job=job)
    code, out, err = job.finish()
    assert code == 0, err
    assert tuple(out.splitlines()) == reference(2)
    again = Job([MPICH.tool("ompi-restart"), str(gdir)], tmp_path, 2)
    time.sleep(random.uniform(0.5, 1.5))
    seq, gdir2 = checkpoint(MPICH, again.pid, job=again)  # waits for the restored ranks to register
    assert (seq, gdir2) == (1, gdir)
    assert "OPAL CRS Component: mtcp" in (gdir / "1" / "opal_snapshot_0.ckpt" /
                                          "snapshot_meta.data").read_text()
    again.kill()
    assert not STARTED.search("".join(again.err))
    restarted(gdir, 2)
    restarted(gdir, 2, "--seq", "0")


def test_mtcp_refusals_and_the_job_goes_on(tmp_path: Path) -> None:
    """A rank holding a TCP socket of its own: the kernel refuses the image, in one line naming
    the descriptor, and MPI is rebuilt; blcr asked for an mtcp job is refused; the job ends with
    the output of an uninterrupted run."""
    job = start(tmp_path, 3, "tcp", crs="mtcp")
    job.wait_started()
    checkpoint_refused(job, f"checkpoint of job {job.pid} failed", "mtcp: process",
                       "IPv4 socket", "which mtcp cannot restore")
    checkpoint_refused(job, "saved whole by mtcp, not by blcr", options=("--mca", "crs", "blcr"))
    goes_on_to_the_end(job, tmp_path, 3)


@pytest.mark.parametrize("name,value", [("crs_mtcp_compress", "bogus"),
                                        ("crs_mtcp_omit_fds", "7,x")])
def test_mtcp_bad_parameter_is_refused_at_launch(tmp_path: Path, name: str, value: str) -> None:
    job = subprocess.run([MPICH.tool("mpirun"), "-am", "ft-enable-cr", "--mca", "crs", "mtcp",
                          "--mca", name, value, "-np", "2", MPICH.python, APP, "10", "0"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert job.returncode == 2 and job.stdout == ""
    one_line_error(job.stderr, "mpirun", name, repr(value))
    assert not STARTED.search(job.stderr)


# -- objects the layer makes again --------------------------------------------------------------
@pytest.mark.parametrize("feature", ["window", "datatype"])
def test_live_window_or_datatype_is_made_again(tmp_path: Path, feature: str) -> None:
    """A one-sided window (used every 10 steps: Fence, Put, Fence) or a committed derived
    datatype (it carries every step's halo) held across the checkpoint: the job goes on with
    MPI rebuilt under it, and the restarted job ends as an uninterrupted run."""
    job = start(tmp_path, 3, feature)
    at_random_moment(job)
    _, gdir = checkpoint(MPICH, job.pid, job=job)
    code, out, err = job.finish()
    assert code == 0, err
    assert tuple(out.splitlines()) == reference(3)
    restarted(gdir, 3)


# -- what is refused ---------------------------------------------------------------------------
@pytest.mark.parametrize("feature,words", [
    ("shared", "shared-memory window (MPI_Win_allocate_shared) is live"),
    ("tcp", "TCP socket"),  # the layer agrees, blcr refuses the image: MPI is rebuilt too
])
def test_layer_refusal_fails_the_checkpoint_and_the_job_goes_on(tmp_path: Path, feature: str,
                                                               words: str) -> None:
    job = start(tmp_path, 3, feature)
    job.wait_started()
    checkpoint_refused(job, f"checkpoint of job {job.pid} failed", words)
    goes_on_to_the_end(job, tmp_path, 3)


def test_a_cut_held_back_past_the_quiesce_timeout_fails_the_checkpoint(tmp_path: Path) -> None:
    """Rank 0 computes for 6 s outside MPI while rank 2 waits for it in an Allreduce; with
    snapc_crcp_quiesce_timeout 1 a checkpoint asked for meanwhile fails in one line, no
    sequence is left, and the job goes on to the uninterrupted run's output."""
    job = start(tmp_path, 3, "slow", steps="200",
                mca=("--mca", "snapc_crcp_quiesce_timeout", "1"))
    with job.changed:
        while "rank 0 computes" not in "".join(job.err):
            assert job.proc.poll() is None, job.finish()
            job.changed.wait(0.5)
    checkpoint_refused(job, f"checkpoint of job {job.pid} failed",
                       "did not reach a consistent cut within 1 s")
    goes_on_to_the_end(job, tmp_path, 3, "200")


def test_other_component_on_a_transparent_job(tmp_path: Path) -> None:
    """Asked for self, the ranks wait for callbacks until crs_base_startup_timeout (they may be
    starting still), then refuse in one line; the next checkpoint, for blcr, works."""
    job = start(tmp_path, 2, steps=LONG_STEPS)
    job.wait_started()
    checkpoint_refused(job, "registered no checkpoint callback", "which the self component needs",
                       "saved whole by blcr", options=("--mca", "crs", "self"))
    _, gdir = checkpoint(MPICH, job.pid, job=job)  # and the next one works
    code, out, err = job.finish()
    assert code == 0, err
    assert tuple(out.splitlines()) == reference(2, LONG_STEPS)
    restarted(gdir, 2, steps=LONG_STEPS)


def test_open_mpi_is_refused_at_launch(tmp_path: Path) -> None:
    bin_dir = _openmpi_bin()
    if bin_dir is None:
        pytest.skip("no Open MPI environment: `make test` creates .venv-openmpi")
    ompi = MPI("openmpi", bin_dir)
    job = subprocess.run([ompi.tool("mpirun"), *ompi.launcher_options, "-am", "ft-enable-cr",
                          "--mca", "crs", "blcr", "-np", "2", ompi.python, APP, "10", "0"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert job.returncode == 2 and job.stdout == ""
    one_line_error(job.stderr, "mpirun", "needs MPICH", "Open MPI 5",
                   "cannot finalize and re-initialize MPI sessions more than once",
                   "use the self component")
    assert not list(tmp_path.iterdir())  # nothing launched, no snapshot directory


def test_snapshot_records(tmp_path: Path) -> None:
    """Each rank's snapshot says how the rank was started and that ompi-restart relaunches it
    through opal-restart."""
    job = start(tmp_path, 2)
    job.wait_started()
    _, gdir = checkpoint(MPICH, job.pid, job=job)
    job.kill()
    res = run([MPICH.tool("ompi-restart"), "--showme", str(gdir)])
    assert res.returncode == 0, res.stderr
    for r in range(2):
        assert f"opal-restart {gdir}/0/opal_snapshot_{r}.ckpt" in res.stdout
        meta = (gdir / "0" / f"opal_snapshot_{r}.ckpt" / "snapshot_meta.data").read_text()
        assert "CRCP Transparent: 1" in meta and APP in meta
    restarted(gdir, 2)
