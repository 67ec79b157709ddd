"""C/R mode does not change MPI behaviour: our mpirun against the plain launcher, same test.

Every job runs under MPICH and Open MPI (the ``mpi`` fixture), in up to three launch modes:

* ``plain``: the MPI's own launcher (``mpi.plain(n)``), without pycrs;
* ``mpirun``: our mpirun without C/R options (it execs the real launcher);
* ``cr``: our mpirun with ``-am ft-enable-cr`` (it stays, as the job's global coordinator).

What is compared: the results of an MPI test battery (tests/apps/mpi_suite.py), stdout, stderr
and stdin, exit statuses (tests/apps/mpi_jobctl.py), and what signals sent to mpirun do to the
ranks. Rank PIDs come from files the ranks write. Timeouts are safety nets only.
"""
from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import APPS, MPI
from helpers import gone, kill_session, proc_state, wait_until

SUITE = str(APPS / "mpi_suite.py")
JOBCTL = str(APPS / "mpi_jobctl.py")
NP = 4
MODES = ("plain", "mpirun", "cr")
STDIN = ["first line", "  spaces and\ttab  ", "", "ünïcödé ✓", "last line"]


def command(mpi: MPI, mode: str, program: list[str]) -> list[str]:
    """How a user starts ``program`` on NP ranks in ``mode``."""
    if mode == "plain":
        return [*mpi.plain(NP), mpi.python, *program]
    cr = ["-am", "ft-enable-cr"] if mode == "cr" else []
    return [mpi.tool("mpirun"), *cr, *mpi.launcher_options, "-n", str(NP), mpi.python, *program]


def job_env(control_dir: Path) -> dict[str, str]:
    """The same environment for every mode. Open MPI's osc/ucx prints an error (with PIDs) in
    every rank that opens an RMA window on a machine without UCX hardware, and its OFI BTL
    slows every MPI_Init by a second: both are switched off, as a user here would."""
    return dict(os.environ, PYCRS_CONTROL_DIR=str(control_dir), OMPI_MCA_osc="^ucx",
                OMPI_MCA_btl="^ofi")


@dataclass
class Job:
    """One real job in its own session and output directory; killed whole if a test fails."""

    mode: str
    proc: subprocess.Popen[str]
    out: Path
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    ranks: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls, mpi: MPI, mode: str, program: list[str], out: Path,
              stdin: int | None = subprocess.DEVNULL) -> Job:
        out.mkdir(parents=True)
        ctl = out / "ctl"
        ctl.mkdir(mode=0o700)
        args = command(mpi, mode, [*program[:1], str(out), *program[1:]])
        proc = subprocess.Popen(args, cwd=out, env=job_env(ctl), stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        return cls(mode, proc, out)

    def wait_ranks(self) -> list[dict]:
        """Every rank's rank.<r>.json, once all are there (the ranks are up by then)."""
        files = [self.out / f"rank.{r}.json" for r in range(NP)]

        def ready() -> bool:
            assert self.proc.poll() is None, f"{self.mode} job ended early: {self.finish()}"
            return all(f.exists() for f in files)

        wait_until(ready, f"the ranks of the {self.mode} job")
        return self.load_ranks()

    def load_ranks(self) -> list[dict]:
        self.ranks = [json.loads((self.out / f"rank.{r}.json").read_text()) for r in range(NP)]
        return self.ranks

    @property
    def rank_pids(self) -> list[int]:
        return [r["pid"] for r in self.ranks]

    def finish(self, stdin: str | None = None) -> tuple[int, str, str]:
        try:
            self.stdout, self.stderr = self.proc.communicate(stdin, timeout=180)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.rc = self.proc.returncode
        return self.rc, self.stdout, self.stderr

    def signals(self, rank: int) -> list[str]:
        path = self.out / f"signals.{rank}"
        return path.read_text().split() if path.exists() else []

    def kill(self) -> None:
        """SIGKILL the launcher's session and every rank still running this job's program
        (MPICH's ranks sit in sessions of their own)."""
        for pid in self.rank_pids:
            try:
                mine = str(self.out) in Path(f"/proc/{pid}/cmdline").read_text()
                if mine:
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        kill_session(self.proc.pid)
        if self.proc.returncode is None:
            self.proc.communicate()


@pytest.fixture
def jobs(tmp_path: Path):
    """Start jobs; whatever is left of them at the end of the test is killed."""
    started: list[Job] = []

    def start(mpi: MPI, mode: str, program: list[str], **kw: object) -> Job:
        job = Job.start(mpi, mode, program, tmp_path / f"{mode}-{len(started)}", **kw)  # type: ignore[arg-type]
        started.append(job)
        return job

    yield start
    for job in started:
        job.kill()


# --- the MPI test battery, stdout, stderr, stdin, exec ------------------------------------------

@dataclass
class SuiteRun:
    job: Job
    exe: str
    cmdline: list[str]
    args: list[str]
    endpoint_seen: bool


@pytest.fixture(scope="module")
def suite_runs(mpi: MPI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, SuiteRun]:
    """The battery in every mode. Rank 0 ends by reading stdin, so each job is known to be
    running (launcher and all) until the test writes its stdin: that is when the mpirun
    process is looked at."""
    base = tmp_path_factory.mktemp(f"suite-{mpi.flavour}")
    runs: dict[str, SuiteRun] = {}
    for mode in MODES:
        job = Job.start(mpi, mode, [SUITE, str(len(STDIN))], base / mode, stdin=subprocess.PIPE)
        try:
            job.wait_ranks()
            pid = job.proc.pid
            exe = os.readlink(f"/proc/{pid}/exe")
            cmdline = Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]
            endpoint_seen = (job.out / "ctl" / f"mpirun-{pid}.sock").exists()
            job.finish("".join(line + "\n" for line in STDIN))
        finally:
            job.kill()
        runs[mode] = SuiteRun(job, exe, cmdline, list(job.proc.args), endpoint_seen)  # type: ignore[arg-type]
    return runs


def _suite_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("suite ")]


def test_mpi_suite_gives_the_same_results_in_every_mode(suite_runs: dict[str, SuiteRun]) -> None:
    for mode, run in suite_runs.items():
        assert run.job.rc == 0, f"{mode}: {run.job.stderr}"
    reference = _suite_lines(suite_runs["plain"].job.stdout)
    assert len(reference) > 70 and reference[-1] == "suite done"
    for mode in ("mpirun", "cr"):
        assert _suite_lines(suite_runs[mode].job.stdout) == reference, mode
    # The comparison means something only if C/R really was on in the cr job (and only there).
    active = {mode: [r["cr_active"] for r in run.job.ranks] for mode, run in suite_runs.items()}
    assert active == {"plain": [False] * NP, "mpirun": [False] * NP, "cr": [True] * NP}
    assert [run.endpoint_seen for run in suite_runs.values()] == [False, False, True]


def test_stdout_and_stderr_of_every_rank_pass_through(suite_runs: dict[str, SuiteRun]) -> None:
    """Lines of different ranks interleave differently from run to run: compare them as
    multisets. stderr holds exactly the ranks' lines, in every mode (pycrs adds nothing)."""
    expected_err = sorted(f"stderr rank {r} line {i}" for r in range(NP) for i in range(3))
    expected_out = sorted(f"stdout rank {r} line {i}" for r in range(NP) for i in range(3))
    plain = suite_runs["plain"].job
    for mode, run in suite_runs.items():
        out_lines = run.job.stdout.splitlines()
        assert sorted(run.job.stderr.splitlines()) == expected_err, mode
        assert sorted(ln for ln in out_lines if ln.startswith("stdout ")) == expected_out, mode
        assert sorted(out_lines) == sorted(plain.stdout.splitlines()), mode


def test_stdin_reaches_rank_0(suite_runs: dict[str, SuiteRun]) -> None:
    expected = [f"stdin {i}: {line!r}" for i, line in enumerate(STDIN)]
    for mode, run in suite_runs.items():
        lines = run.job.stdout.splitlines()
        assert [ln for ln in lines if ln.startswith("stdin ")] == expected, mode
        # rank 0's own output keeps its order: stdin is echoed after its stdout lines
        rank0 = [ln for ln in lines if ln.startswith(("stdout rank 0 ", "stdin ", "suite done"))]
        assert rank0 == [f"stdout rank 0 line {i}" for i in range(3)] + expected + ["suite done"]


def test_without_cr_mpirun_execs_the_real_launcher(suite_runs: dict[str, SuiteRun]) -> None:
    """Our mpirun's PID runs the launcher binary itself (not Python), with our argv."""
    plain, ours, cr = suite_runs["plain"], suite_runs["mpirun"], suite_runs["cr"]
    assert Path(ours.exe).read_bytes()[:4] == b"\x7fELF"
    assert "python" not in Path(ours.exe).name
    # MPICH: ours execs mpiexec.hydra, an identical copy of mpiexec; Open MPI: both end as
    # prterun (the mpiexec shim execs it in the same process)
    assert ours.exe == plain.exe or filecmp.cmp(ours.exe, plain.exe, shallow=False)
    plain_args = [a.replace(str(plain.job.out), str(ours.job.out)) for a in plain.cmdline[1:]]
    assert ours.cmdline[1:] == ours.args[1:] == plain_args
    assert os.path.basename(ours.cmdline[0]).startswith(("mpiexec", "prterun"))
    # in C/R mode the mpirun process stays ours (Python), as the job's coordinator
    assert cr.exe != ours.exe and "python" in Path(cr.exe).name


# --- exit statuses ------------------------------------------------------------------------------

@pytest.mark.parametrize("case, status", [("exit3", 3), ("raise", 1)])
def test_exit_status_is_the_launchers(mpi: MPI, jobs, case: str, status: int) -> None:
    """The cases are built so that the plain launcher is deterministic: the failing rank is the
    last process of the job (MPICH reports 3 or 9 at random when a rank exits non-zero while
    others still run, see test_launcher.py). Our mpirun must report what it reports."""
    results = {}
    for mode in MODES:
        job = jobs(mpi, mode, [JOBCTL, case])
        job.finish()
        results[mode] = job
    plain = results["plain"]
    assert plain.rc == status, plain.stderr
    for mode, job in results.items():
        assert job.rc == plain.rc, f"{mode}: {job.stderr}"
        assert job.stdout == plain.stdout, mode
        if case == "raise":
            assert "RuntimeError: rank 1 fails on purpose" in job.stderr, mode
        pids = [r["pid"] for r in job.load_ranks()]
        wait_until(lambda pids=pids: all(gone(p) for p in pids), "the ranks to end")
    assert plain.stdout == ("result 10 of 4 ranks\n" if case == "exit3" else "")


# --- signals sent to our mpirun in C/R mode -----------------------------------------------------

def test_sigusr1_tstp_and_cont(mpi: MPI, jobs) -> None:
    """SIGUSR1 reaches every rank as under the plain launcher; SIGTSTP stops every rank and
    mpirun itself; SIGCONT resumes them, and the job then finishes as it should."""
    plain = jobs(mpi, "plain", [JOBCTL, "wait-usr1"])
    plain.wait_ranks()
    os.kill(plain.proc.pid, signal.SIGUSR1)
    plain.finish()
    assert plain.rc == 0, plain.stderr
    assert plain.stdout == "result 10 of 4 ranks\n"

    cr = jobs(mpi, "cr", [JOBCTL, "wait-usr1"])
    cr.wait_ranks()
    mpirun = cr.proc.pid
    os.kill(mpirun, signal.SIGTSTP)
    wait_until(lambda: all(proc_state(p) == "T" for p in [mpirun, *cr.rank_pids]),
               "mpirun and every rank to stop")
    assert all(cr.signals(r) == [] for r in range(NP))  # stopped, not told
    os.kill(mpirun, signal.SIGCONT)
    wait_until(lambda: all(proc_state(p) not in ("T", None) for p in [mpirun, *cr.rank_pids]),
               "mpirun and every rank to continue")
    wait_until(lambda: all("CONT" in cr.signals(r) for r in range(NP)), "SIGCONT in every rank")
    os.kill(mpirun, signal.SIGUSR1)
    cr.finish()
    assert (cr.rc, cr.stdout) == (plain.rc, plain.stdout), cr.stderr
    for r in range(NP):
        assert [s for s in plain.signals(r) if s != "CONT"] == ["USR1"], r
        assert [s for s in cr.signals(r) if s != "CONT"] == ["USR1"], r


def launcher_ends(mpi: MPI, sig: signal.Signals, plain_rc: int) -> set[int]:
    """The exit codes the plain launcher could have given. hydra exits with the bitwise OR of
    its ranks' wait statuses, and its proxy SIGKILLs the ranks still running once one has died:
    after SIGINT it gives 2, or 11 (2 | 9) when a rank was killed before it died of its own
    SIGINT (2 of 25 plain jobs here); a race of the launcher's, in either mode."""
    if mpi.flavour == "mpich" and plain_rc in (sig, sig | signal.SIGKILL):
        return {int(sig), int(sig | signal.SIGKILL)}
    return {plain_rc}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["TERM", "INT", "HUP"])
def test_signals_that_end_the_job_end_it_as_the_launcher_does(mpi: MPI, jobs,
                                                              sig: signal.Signals) -> None:
    """Each rank records what it receives and, once all have, dies of it. Which signal the
    ranks get and how the launcher ends are the launcher's business (hydra passes SIGTERM and
    SIGINT on and reports them, and dies of SIGHUP, its proxies then killing the ranks;
    prterun sends SIGCONT, SIGTERM and then SIGKILL, and exits with 1): in C/R mode the ranks
    must see the same, and mpirun's wait status (exit code, or the signal it died of) must be
    one the plain launcher gives (hydra's own race aside: launcher_ends)."""
    results = {}
    for mode in ("plain", "cr"):
        job = jobs(mpi, mode, [JOBCTL, "wait-end"])
        job.wait_ranks()
        os.kill(job.proc.pid, sig)
        job.finish()
        wait_until(lambda job=job: all(gone(p) for p in job.rank_pids), "the ranks to end")
        results[mode] = job
    plain, cr = results["plain"], results["cr"]
    assert plain.rc != 0, plain.stderr
    assert cr.rc in launcher_ends(mpi, sig, plain.rc), (plain.stderr, cr.stderr)
    seen = {mode: [job.signals(r) for r in range(NP)] for mode, job in results.items()}
    assert seen["cr"] == seen["plain"]
    if sig != signal.SIGHUP:  # hydra does not pass SIGHUP on
        assert all(set(s) & {"TERM", "INT"} for s in seen["plain"]), seen
