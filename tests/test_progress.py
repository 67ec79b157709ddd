"""Progress of the tools' long operations: on a terminal, a bar with the bytes written (or
checked) so far and their rate, then the one-line summary (size, time, rate); without a
terminal, no bar, the summary alone. The tools run under a real pseudo-terminal against real
jobs, and the restarted jobs finish with the uninterrupted run's output."""
from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, ROOT, expected_after, restarted_at, run, tool
from crs.progress import summary
from helpers import kill_session, start_under_pycrs, wait_for_job_endpoint

STENCIL = str(ROOT / "examples" / "mpi_stencil.py")
# 2 ranks of 16 Mi points (128 MiB of state each): a checkpoint writes 256 MiB
STEPS, POINTS = "20", str(1 << 24)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SIZE = r"\d+(?:\.\d+)? (?:B|KiB|MiB|GiB|TiB)"
FIGURES = rf"({SIZE}) in \d+\.\d\d s, {SIZE}/s"
SUMMARY = rf"\({FIGURES}\)"
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
PTY_ENV = {"TERM": "xterm", "COLUMNS": "120", "PYCRS_PROGRESS_DELAY": "0"}


def on_terminal(argv: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on a new pseudo-terminal; its exit code and
    everything it wrote there (the terminal's \\r\\n as \\n)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing of pytest's runs here
        try:
            os.execve(argv[0], argv, {**os.environ, **PTY_ENV})
        finally:
            os._exit(127)
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal's last descriptor
                break
            if not chunk:
                break
            out += chunk
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace").replace("\r\n", "\n")


def frames(text: str, what: str) -> list[int]:
    """The bytes each drawn frame of the bar named ``what`` shows, in order."""
    counts = []
    for piece in re.split(r"[\r\n]", ANSI.sub("", text)):
        if piece.startswith(what):
            m = re.search(rf"({SIZE}) ", piece[len(what):])
            if m:
                number, unit = m.group(1).split()
                counts.append(int(float(number) * UNITS[unit]))
    return counts


def shown(text: str) -> str:
    """What stays on the terminal's lines: without escape sequences, each line as the last
    carriage return left it (the bar's frames overwritten)."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in ANSI.sub("", text).split("\n"))


def start_stencil(where: Path) -> subprocess.Popen[str]:
    cmd = [tool("mpirun"), "-am", "ft-enable-cr", "--mca", "snapc_base_global_snapshot_dir",
           str(where), "-np", "2", str(BIN / "python"), STENCIL, STEPS, "0", POINTS]
    proc = subprocess.Popen(cmd, cwd=where, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    wait_for_job_endpoint(proc, details=proc.communicate)
    return proc


@pytest.fixture(scope="module")
def reference() -> list[str]:
    res = run([str(BIN / "mpiexec"), "-n", "2", str(BIN / "python"), STENCIL, STEPS, "0", POINTS])
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def stop(job: subprocess.Popen[str]) -> None:
    kill_session(job.pid)
    job.communicate(timeout=60)


def test_bars_on_a_terminal_then_the_summaries(tmp_path: Path, reference: list[str]) -> None:
    """ompi-checkpoint on a terminal: a bar whose byte count grows as the ranks write, erased,
    then 'Snapshot Ref.: SEQ DIR' as Open MPI prints it and 'ompi-checkpoint: checkpoint of job
    JOBID: SIZE in T s, RATE', SIZE being the sequence's. ompi-restart
    on a terminal: the bar of the verification, then its summary line, then the job resumes to
    the uninterrupted run's output."""
    job = start_stencil(tmp_path)
    try:
        code, out = on_terminal([tool("ompi-checkpoint"), str(job.pid)])
        assert code == 0, out
        counts = frames(out, f"checkpoint of job {job.pid}")
        assert len(set(counts)) >= 2 and counts == sorted(counts), (counts, out[-2000:])
        m = re.search(r"^Snapshot Ref\.: 0 (\S+)$", shown(out), re.M)
        figures = re.search(rf"^ompi-checkpoint: checkpoint of job {job.pid}: {FIGURES}$",
                            shown(out), re.M)
        assert m and figures, out[-2000:]
        gdir = Path(m.group(1))
        on_disk = sum(p.stat().st_size for p in (gdir / "0").rglob("*") if p.is_file())
        number, unit = figures.group(1).split()
        assert abs(float(number) * UNITS[unit] - on_disk) <= on_disk * 0.01, (figures[1], on_disk)
        assert counts[-1] <= on_disk
    finally:
        stop(job)
    code, out = on_terminal([tool("ompi-restart"), str(gdir)])
    assert code == 0, out[-3000:]
    counts = frames(out, "verifying sequence 0")
    assert counts and counts == sorted(counts), out[-3000:]
    plain = shown(out)
    assert re.search(rf"^ompi-restart: verified sequence 0 of {re.escape(str(gdir))} {SUMMARY}; "
                     r"restarting 2 ranks$", plain, re.M), plain[-3000:]
    lines = plain.splitlines()
    step = restarted_at(plain)
    assert [ln for ln in lines if ln.startswith(("step ", "result"))] == \
        expected_after(reference, step)


def test_without_a_terminal_only_the_summaries(tmp_path: Path, reference: list[str]) -> None:
    """The same tools with their output in pipes: no bar, Open MPI's reference line alone on
    stdout and the summary on stderr; ompi-restart says its one line on stderr (stdout is the
    job's)."""
    job = start_stencil(tmp_path)
    try:
        res = run([tool("ompi-checkpoint"), str(job.pid)], env={**os.environ, **PTY_ENV})
        assert res.returncode == 0, res.stderr
        m = re.fullmatch(r"Snapshot Ref\.: 0 (\S+)\n", res.stdout)
        assert m, res.stdout
        assert re.fullmatch(rf"ompi-checkpoint: checkpoint of job {job.pid}: {FIGURES}\n",
                            res.stderr), res.stderr
    finally:
        stop(job)
    res = run([tool("ompi-restart"), m.group(1)], env={**os.environ, **PTY_ENV})
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stderr + res.stdout
    said = [ln for ln in res.stderr.splitlines() if ln.startswith("ompi-restart:")]
    assert len(said) == 1 and re.fullmatch(rf"ompi-restart: verified sequence 0 of \S+ "
                                           rf"{SUMMARY}; restarting 2 ranks", said[0]), said
    assert res.stdout.splitlines() == expected_after(reference, restarted_at(res.stderr))


HOLDER = """
import sys, time
import numpy as np
import crs

@crs.on_checkpoint
def save():
    return {"step": step, "data": data}

state = crs.restored()
step, data = (0, np.arange(32 << 20, dtype=np.float64)) if state is None else \\
    (state["step"], state["data"])
while step < int(sys.argv[1]):
    crs.safe_point()
    time.sleep(0.05)
    step += 1
print("result", step, float(data[::4096].sum()), flush=True)
"""


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipes"])
def test_opal_tools(tmp_path: Path, terminal: bool) -> None:
    """opal-checkpoint of a process under pycrs holding 256 MiB: on a terminal a growing bar,
    then 'Local Snapshot Reference: PATH' and 'opal-checkpoint: saved process PID: SIZE in T s,
    RATE'; in pipes the same lines without the bar.
    opal-restart says what it verified in one line on stderr and the program ends as it would
    have."""
    program = tmp_path / "holder.py"
    program.write_text(HOLDER)
    proc = start_under_pycrs([str(program), "200"], tmp_path, start_new_session=True)
    try:
        argv = [tool("opal-checkpoint"), "-w", str(tmp_path), str(proc.pid)]
        if terminal:
            code, out = on_terminal(argv)
            counts = frames(out, f"checkpoint of process {proc.pid}")
            assert len(set(counts)) >= 2 and counts == sorted(counts), (counts, out[-2000:])
        else:
            res = run(argv, env={**os.environ, **PTY_ENV})
            code, out = res.returncode, res.stdout + res.stderr
            assert re.fullmatch(r"Local Snapshot Reference: \S+\n", res.stdout), res.stdout
        assert code == 0, out
        m = re.search(r"^Local Snapshot Reference: (\S+)$", shown(out), re.M)
        assert m, out[-2000:]
        assert re.search(rf"^opal-checkpoint: saved process {proc.pid}: {FIGURES}$", shown(out),
                         re.M), out[-2000:]
    finally:
        kill_session(proc.pid)
        proc.communicate(timeout=60)
    res = run([tool("opal-restart"), m.group(1)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert re.fullmatch(rf"opal-restart: verified \S+ {SUMMARY}; restarting it\n",
                        res.stderr), res.stderr
    assert re.fullmatch(r"result 200 \S+\n", res.stdout), res.stdout


@pytest.mark.parametrize("nbytes,seconds,text", [
    (0, 1.0, "0 B in 1.00 s, 0 B/s"),
    (999, 0.5, "999 B in 0.50 s, 1.95 KiB/s"),
    (1023693, 1.0, "0.976 MiB in 1.00 s, 0.976 MiB/s"),  # 999.7 KiB: never "1e+03 KiB"
    (5 << 30, 4.0, "5 GiB in 4.00 s, 1.25 GiB/s"),
])
def test_summary_figures(nbytes: int, seconds: float, text: str) -> None:
    assert summary(nbytes, seconds) == text
