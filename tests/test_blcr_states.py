"""The ``blcr`` component on real processes, one kind of state at a time.

Each C program in ``blcr_programs/`` sets up one kind of state (registers, memory, descriptors,
signals, timers, threads, ...), prints READY, and on SIGTERM checks that its state is exactly as
it was, printing OK (exit 0) or one ``FAIL: ...`` line per failed check on stderr (exit 1). The
programs are first shown to pass their own checks without any checkpoint, and to catch a change
of their state (BLCR_TEST_SABOTAGE=1). Then each goes through a user's cycle: start it,
``opal-checkpoint --mca crs blcr``, SIGKILL it, ``opal-restart`` it, SIGTERM it: it must end with
OK. The Python programs must end, after two checkpoints, a kill and a restore, exactly as an
uninterrupted run does. Bad requests fail with one line on stderr.
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
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import tool
from helpers import Child, Session, alive, proc_stat, start_program, wait_until

pytestmark = pytest.mark.usefixtures("private_home")  # no user parameter file leaks in

PROGRAMS = Path(__file__).resolve().parent / "blcr_programs"
C_PROGRAMS = sorted(p.stem for p in PROGRAMS.glob("*.c"))
REFUSED = {"tcp"}  # its checkpoint must be refused
RESTORABLE = [p for p in C_PROGRAMS if p not in REFUSED]

READY_TIMEOUT = 30.0   # a program's READY, opal-restart's "restored process" line
EXIT_TIMEOUT = 60.0    # a program's checks after SIGTERM
TOOL_TIMEOUT = 300.0   # opal-checkpoint of 1 GiB, a Python program's whole run


def tracer_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no TracerPid for {pid}")


# ---------------------------------------------------------------------------------------------
# The programs

def compile_programs(tmp_path_factory: pytest.TempPathFactory,
                     names: list[str]) -> dict[str, Path]:
    """The C programs ``names``, compiled into a fresh directory."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc")
    out = tmp_path_factory.mktemp("bin")
    built = {}
    for name in names:
        exe = out / name
        res = subprocess.run([gcc, "-O1", "-pthread", "-Wall", "-o", str(exe),
                              str(PROGRAMS / f"{name}.c"), "-lrt", "-lm"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"{name}.c does not compile:\n{res.stderr}"
        built[name] = exe
    return built


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every C program, compiled once."""
    return compile_programs(tmp_path_factory, C_PROGRAMS)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The directory a program works in (its files, FIFO, cwd), given as its argument."""
    d = tmp_path / "work"
    d.mkdir()
    return d


def c_program(session: Session, binaries: dict[str, Path], name: str, work: Path,
              **kw: object) -> Child:
    return start_program(session, [str(binaries[name]), str(work)], timeout=READY_TIMEOUT, **kw)


def expect_ok(result: tuple[int, str, str], what: str) -> None:
    code, out, err = result
    assert code == 0 and "OK" in out.split(), (
        f"{what}: exit status {code}\nstdout: {out!r}\nstderr:\n{err}")


# ---------------------------------------------------------------------------------------------
# The tools

def checkpoint(pid: int, where: Path, *opts: str) -> Path:
    """opal-checkpoint --mca crs blcr: the snapshot it reports (must be
    WHERE/opal_snapshot_PID.ckpt)."""
    res = subprocess.run([tool("opal-checkpoint"), "--mca", "crs", "blcr", "-w", str(where),
                          *opts, str(pid)], capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert res.returncode == 0, f"opal-checkpoint of {pid} failed ({res.returncode}):\n{res.stderr}"
    m = re.search(r"^Local Snapshot Reference: (.+)$", res.stdout, re.M)
    assert m, f"no snapshot reference in {res.stdout!r}"
    snap = Path(m.group(1))
    assert snap.is_absolute() and snap == where.absolute() / f"opal_snapshot_{pid}.ckpt", snap
    assert snap.is_dir(), snap
    return snap


def refused_checkpoint(pid: int, where: Path) -> str:
    """opal-checkpoint that must fail: its one stderr line; nothing left in WHERE."""
    where.mkdir(exist_ok=True)
    res = subprocess.run([tool("opal-checkpoint"), "--mca", "crs", "blcr", "-w", str(where),
                          str(pid)], capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert res.returncode != 0, f"checkpoint of {pid} was not refused: {res.stdout}"
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("opal-checkpoint: "), res.stderr
    assert not list(where.iterdir()), f"left behind: {list(where.iterdir())}"
    return lines[0]


def restore(session: Session, snapshot: Path, pid: int, marker: str, *opts: str,
            **kw: object) -> Child:
    """opal-restart -v [OPTS] SNAPSHOT, once it says the process runs again; that process must
    have the original PID and be opal-restart's child."""
    restart = session.start([tool("opal-restart"), "-v", *opts, str(snapshot)], **kw)
    session.restored.append((pid, marker))
    m = restart.err.wait_for(rb"restored process (\d+)", READY_TIMEOUT, "opal-restart")
    assert int(m.group(1)) == pid, f"restored as {m.group(1)}, not {pid}"
    st = proc_stat(pid)
    assert st is not None, f"process {pid} does not run after the restore"
    assert st[1] == restart.pid, f"process {pid} is a child of {st[1]}, not of opal-restart"
    return restart


def sigterm_and_finish(restart: Child, pid: int) -> tuple[int, str, str]:
    """SIGTERM to the restored process (by its original PID); opal-restart's result."""
    os.kill(pid, signal.SIGTERM)
    return restart.finish(EXIT_TIMEOUT)


def cycle(session: Session, child: Child, where: Path, marker: str) -> Child:
    """checkpoint, SIGKILL, restore: the running opal-restart."""
    snap = checkpoint(child.pid, where)
    child.kill_and_reap()
    return restore(session, snap, child.pid, marker)


# ---------------------------------------------------------------------------------------------
# The programs on their own

@pytest.mark.parametrize("name", C_PROGRAMS)
def test_program_self_check_without_checkpoint(session: Session, binaries: dict[str, Path],
                                               work: Path, name: str) -> None:
    """Each program's checks pass when nothing happened to it."""
    child = c_program(session, binaries, name, work)
    child.popen.send_signal(signal.SIGTERM)
    expect_ok(child.finish(EXIT_TIMEOUT), name)


@pytest.mark.parametrize("name", C_PROGRAMS)
def test_program_catches_a_change_of_its_state(session: Session, binaries: dict[str, Path],
                                               work: Path, name: str) -> None:
    """With BLCR_TEST_SABOTAGE=1 the program changes its state before READY: its checks see it."""
    child = c_program(session, binaries, name, work, env={"BLCR_TEST_SABOTAGE": "1"})
    child.popen.send_signal(signal.SIGTERM)
    code, out, err = child.finish(EXIT_TIMEOUT)
    assert code == 1 and "OK" not in out.split(), (code, out, err)
    assert re.search(r"^FAIL: ", err, re.M), err


# ---------------------------------------------------------------------------------------------
# Checkpoint and restart, one kind of state at a time

@pytest.mark.parametrize("name", RESTORABLE)
def test_state_survives_checkpoint_and_the_process_goes_on(
        session: Session, binaries: dict[str, Path], work: Path, tmp_path: Path,
        name: str) -> None:
    """A checkpoint leaves the process running with its state untouched."""
    child = c_program(session, binaries, name, work)
    checkpoint(child.pid, tmp_path)
    assert child.popen.poll() is None, "the process ended after a default checkpoint"
    assert tracer_of(child.pid) == 0, "the process is still traced after the checkpoint"
    child.popen.send_signal(signal.SIGTERM)
    expect_ok(child.finish(EXIT_TIMEOUT), f"{name} after its checkpoint")


@pytest.mark.parametrize("name", RESTORABLE)
def test_state_survives_kill_and_restart(session: Session, binaries: dict[str, Path],
                                         work: Path, tmp_path: Path, name: str) -> None:
    """checkpoint, SIGKILL, opal-restart: the restored process finds its state intact."""
    child = c_program(session, binaries, name, work)
    restart = cycle(session, child, tmp_path, str(binaries[name]))
    expect_ok(sigterm_and_finish(restart, child.pid), f"restored {name}")


@pytest.mark.parametrize("name", ["threads", "syscalls", "mem_stack_heap"])
def test_restored_process_checkpointed_and_restored_again(
        session: Session, binaries: dict[str, Path], work: Path, tmp_path: Path,
        name: str) -> None:
    """A second generation: the restored process is checkpointed, killed and restored again."""
    child = c_program(session, binaries, name, work)
    first = cycle(session, child, tmp_path / "gen1", str(binaries[name]))
    second_snap = checkpoint(child.pid, tmp_path / "gen2")
    os.kill(child.pid, signal.SIGKILL)
    code, _, err = first.finish(EXIT_TIMEOUT)
    assert code == -signal.SIGKILL, f"opal-restart ended with {code}, not by SIGKILL:\n{err}"
    second = restore(session, second_snap, child.pid, str(binaries[name]))
    expect_ok(sigterm_and_finish(second, child.pid), f"{name} restored twice")


# ---------------------------------------------------------------------------------------------
# Options and opal-restart's contract

def test_term_ends_the_process_after_the_snapshot(session: Session, binaries: dict[str, Path],
                                                  work: Path, tmp_path: Path) -> None:
    child = c_program(session, binaries, "threads", work)
    snap = checkpoint(child.pid, tmp_path, "--term")
    try:
        child.popen.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError("the process still runs after --term") from None
    restart = restore(session, snap, child.pid, str(binaries["threads"]))
    expect_ok(sigterm_and_finish(restart, child.pid), "threads restored after --term")


def test_stop_leaves_the_process_stopped(session: Session, binaries: dict[str, Path],
                                         work: Path, tmp_path: Path) -> None:
    """--stop: stopped (not traced) after the snapshot; SIGCONT resumes it intact; the
    snapshot restores too."""
    child = c_program(session, binaries, "syscalls", work)
    snap = checkpoint(child.pid, tmp_path, "--stop")
    wait_until(lambda: (proc_stat(child.pid) or ("?",))[0] == "T", "the process is stopped", 10)
    assert tracer_of(child.pid) == 0, "the stopped process is still traced"
    os.kill(child.pid, signal.SIGCONT)
    child.popen.send_signal(signal.SIGTERM)
    expect_ok(child.finish(EXIT_TIMEOUT), "syscalls continued after --stop")
    restart = restore(session, snap, child.pid, str(binaries["syscalls"]))
    expect_ok(sigterm_and_finish(restart, child.pid), "syscalls restored from a --stop snapshot")


def test_a_stopped_process_comes_back_stopped(session: Session, binaries: dict[str, Path],
                                              work: Path, tmp_path: Path) -> None:
    """A process stopped (SIGSTOP) when it is saved stays stopped after the dump, is restored
    stopped, and goes on intact after SIGCONT."""
    child = c_program(session, binaries, "threads", work)
    os.kill(child.pid, signal.SIGSTOP)
    wait_until(lambda: (proc_stat(child.pid) or ("?",))[0] == "T", "the process is stopped", 10)
    snap = checkpoint(child.pid, tmp_path)
    assert (proc_stat(child.pid) or ("?",))[0] == "T", "the dump woke the stopped process"
    child.kill_and_reap()
    restart = restore(session, snap, child.pid, str(binaries["threads"]))
    wait_until(lambda: (proc_stat(child.pid) or ("?",))[0] == "T", "it is restored stopped", 10)
    os.kill(child.pid, signal.SIGCONT)
    expect_ok(sigterm_and_finish(restart, child.pid), "threads restored stopped, continued")


def test_interval_timer_that_fired_while_held(session: Session, binaries: dict[str, Path],
                                              work: Path, tmp_path: Path) -> None:
    """A periodic ITIMER_REAL that fired while the process could not take the SIGALRM (stopped
    here; held by a dump, it happens by chance) reads as disarmed, its interval kept, until the
    signal is taken: the restored timer still runs with its period."""
    child = c_program(session, binaries, "timers", work)
    os.kill(child.pid, signal.SIGSTOP)
    wait_until(lambda: (proc_stat(child.pid) or ("?",))[0] == "T", "the process is stopped", 10)
    time.sleep(0.2)  # four periods: the SIGALRM is pending, the timer not armed again
    snap = checkpoint(child.pid, tmp_path)
    child.kill_and_reap()
    restart = restore(session, snap, child.pid, str(binaries["timers"]))
    wait_until(lambda: (proc_stat(child.pid) or ("?",))[0] == "T", "it is restored stopped", 10)
    os.kill(child.pid, signal.SIGCONT)
    expect_ok(sigterm_and_finish(restart, child.pid), "timers fired while stopped, restored")


def no_core() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT"])
def test_signals_to_opal_restart_reach_the_restored_process(
        session: Session, binaries: dict[str, Path], work: Path, tmp_path: Path,
        sig: str) -> None:
    """A signal sent to opal-restart goes to the restored process; opal-restart ends as it does
    (fd_devices handles SIGTERM and leaves the other signals at their default action)."""
    signum = signal.Signals[sig]
    child = c_program(session, binaries, "fd_devices", work, preexec_fn=no_core)
    snap = checkpoint(child.pid, tmp_path)
    child.kill_and_reap()
    restart = restore(session, snap, child.pid, str(binaries["fd_devices"]), cwd=tmp_path,
                      preexec_fn=no_core)
    restart.popen.send_signal(signum)
    code, out, err = restart.finish(EXIT_TIMEOUT)
    if signum == signal.SIGTERM:
        expect_ok((code, out, err), "fd_devices after SIGTERM to opal-restart")
    else:
        assert code == -signum, f"opal-restart ended with {code}, not by {sig}:\n{err}"
    assert not alive(child.pid)


def test_exit_status_of_the_restored_process(session: Session, binaries: dict[str, Path],
                                             work: Path, tmp_path: Path) -> None:
    """A restored program whose checks fail: opal-restart exits 1 with its FAIL lines (its
    stderr is opal-restart's)."""
    child = c_program(session, binaries, "fd_devices", work, env={"BLCR_TEST_SABOTAGE": "1"})
    restart = cycle(session, child, tmp_path, str(binaries["fd_devices"]))
    code, out, err = sigterm_and_finish(restart, child.pid)
    assert code == 1 and "OK" not in out.split(), (code, out, err)
    assert "FAIL: fd 40 is not /dev/null" in err, err


# ---------------------------------------------------------------------------------------------
# Refusals

def test_tcp_socket_refused_and_process_unharmed(session: Session, binaries: dict[str, Path],
                                                 work: Path, tmp_path: Path) -> None:
    child = c_program(session, binaries, "tcp", work)
    line = refused_checkpoint(child.pid, tmp_path / "snap")
    assert re.search(r"\b7\b", line) and re.search(r"tcp|socket", line, re.I), line
    st = proc_stat(child.pid)
    assert st is not None and st[0] in "RS", f"the process is not running: {st}"
    assert tracer_of(child.pid) == 0, "the process is still traced"
    child.popen.send_signal(signal.SIGTERM)
    expect_ok(child.finish(EXIT_TIMEOUT), "tcp after the refused checkpoint")


def test_omitted_descriptor_is_left_out_and_closed_after_restore(
        session: Session, binaries: dict[str, Path], work: Path, tmp_path: Path) -> None:
    """crs_blcr_omit_fds: a descriptor the process makes again itself (an MPI rank's launcher
    connection) is not refused but left out: the restored process runs without it."""
    child = c_program(session, binaries, "tcp", work)
    snap = checkpoint(child.pid, tmp_path, "--mca", "crs_blcr_omit_fds", "7")
    child.kill_and_reap()
    restart = restore(session, snap, child.pid, "tcp")
    assert not os.path.exists(f"/proc/{child.pid}/fd/7"), "the omitted descriptor came back"
    assert os.path.exists(f"/proc/{child.pid}/fd/1")
    code, out, _ = sigterm_and_finish(restart, child.pid)
    assert "OK" not in out.split(), "the program did not notice its socket was gone"


def test_omitted_descriptors_must_be_numbers(session: Session, binaries: dict[str, Path],
                                             work: Path, tmp_path: Path) -> None:
    child = c_program(session, binaries, "tcp", work)
    where = tmp_path / "snap"
    where.mkdir()
    res = subprocess.run([tool("opal-checkpoint"), "--mca", "crs", "blcr", "--mca",
                          "crs_blcr_omit_fds", "7,x", "-w", str(where), str(child.pid)],
                         capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "crs_blcr_omit_fds" in res.stderr, res.stderr
    assert not list(where.iterdir())
    child.popen.send_signal(signal.SIGTERM)
    expect_ok(child.finish(EXIT_TIMEOUT), "tcp after the refused checkpoint")


def test_checkpoint_of_a_missing_process(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not alive(gone.pid)
    line = refused_checkpoint(gone.pid, tmp_path / "snap")
    assert str(gone.pid) in line and re.search(r"no (such )?process|not exist", line, re.I), line


SEIZE = textwrap.dedent("""
    import ctypes, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(0x4206, int(sys.argv[1]), None, None) != 0:  # PTRACE_SEIZE
        sys.exit(f"PTRACE_SEIZE: errno {ctypes.get_errno()}")
    print("SEIZED", flush=True)
    sys.stdin.read()  # trace until stdin closes
""")


def test_checkpoint_of_a_traced_process(session: Session, binaries: dict[str, Path], work: Path,
                                        tmp_path: Path) -> None:
    """A process another tracer holds is refused; once that tracer is gone it is unharmed."""
    child = c_program(session, binaries, "fd_devices", work)
    tracer = session.start([sys.executable, "-c", SEIZE, str(child.pid)], stdin=subprocess.PIPE)
    tracer.out.wait_for(rb"^SEIZED$", READY_TIMEOUT, "the tracer")
    assert tracer_of(child.pid) == tracer.pid
    line = refused_checkpoint(child.pid, tmp_path / "snap")
    assert str(child.pid) in line and re.search(r"trac", line, re.I), line
    tracer.popen.stdin.close()  # type: ignore[union-attr]
    tracer.finish(EXIT_TIMEOUT)
    wait_until(lambda: tracer_of(child.pid) == 0, "the tracer let go", 10)
    child.popen.send_signal(signal.SIGTERM)
    expect_ok(child.finish(EXIT_TIMEOUT), "fd_devices after the refused checkpoint")


@pytest.fixture
def foreign_process(session: Session,
                    binaries: dict[str, Path]) -> Iterator[tuple[int, Child | None]]:
    """A process of another user: as root, one of ours running as nobody; otherwise PID 1."""
    if os.geteuid() != 0:
        if os.stat("/proc/1").st_uid == os.geteuid():
            pytest.skip("PID 1 is ours and we are not root")
        yield 1, None
        return
    nobody = pwd.getpwnam("nobody")
    d = Path(tempfile.mkdtemp(prefix="blcr-nobody-"))
    try:
        d.chmod(0o777)
        exe = d / "fd_devices"
        shutil.copy(binaries["fd_devices"], exe)
        exe.chmod(0o755)

        def become_nobody() -> None:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

        child = start_program(session, [str(exe), str(d)], preexec_fn=become_nobody)
        yield child.pid, child
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_checkpoint_of_another_users_process(foreign_process: tuple[int, Child | None],
                                             tmp_path: Path) -> None:
    pid, child = foreign_process
    line = refused_checkpoint(pid, tmp_path / "snap")
    assert str(pid) in line and re.search(r"user|owner|permi|uid", line, re.I), line
    if child is not None:
        assert tracer_of(pid) == 0
        child.popen.send_signal(signal.SIGTERM)
        expect_ok(child.finish(EXIT_TIMEOUT), "the other user's process after the refusal")


def test_corrupted_image_refused(session: Session, binaries: dict[str, Path], work: Path,
                                 tmp_path: Path) -> None:
    """One byte flipped in the snapshot's biggest file: opal-restart names it and starts nothing."""
    child = c_program(session, binaries, "mem_anon", work)
    snap = checkpoint(child.pid, tmp_path)
    child.kill_and_reap()
    biggest = max((p for p in snap.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with open(biggest, "r+b") as f:
        f.seek(biggest.stat().st_size // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x40]))
    res = subprocess.run([tool("opal-restart"), str(snap)], capture_output=True, text=True,
                         timeout=TOOL_TIMEOUT)
    assert res.returncode != 0, f"a corrupted snapshot was restored: {res.stdout}"
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("opal-restart: "), res.stderr
    assert biggest.name in lines[0], f"{biggest.name} not named: {lines[0]}"
    assert not alive(child.pid), "a process runs with the original PID"


# ---------------------------------------------------------------------------------------------
# Python programs: the same end result as an uninterrupted run

@dataclass(frozen=True)
class PyProgram:
    script: str
    args: Callable[[Path], list[str]]
    result: Callable[[Path, str], object]  # (work dir, stdout after READY) -> what must match


def stdout_after_ready(out: str) -> list[str]:
    return [line for line in out.splitlines() if line != "READY"]


PY_PROGRAMS = {
    # 1 GiB updated for 600 steps (~10 s here), then a SHA-256 of the whole array
    "numpy_big": PyProgram("numpy_big.py", lambda w: ["600"],
                           lambda w, out: stdout_after_ready(out)),
    "threads": PyProgram("py_threads.py", lambda w: ["60000"],
                         lambda w, out: stdout_after_ready(out)),
    "files": PyProgram("py_files.py", lambda w: ["4000", str(w / "out.txt")],
                       lambda w, out: (stdout_after_ready(out), (w / "out.txt").read_bytes(),
                                       (w / "out.txt.buffered").read_bytes())),
}


def py_argv(prog: PyProgram, work: Path) -> list[str]:
    return [sys.executable, str(PROGRAMS / prog.script), *prog.args(work)]


@pytest.fixture(scope="module")
def py_reference(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], object]:
    """The result of an uninterrupted run of a Python program (run once, when first asked)."""
    cache: dict[str, object] = {}

    def get(name: str) -> object:
        if name not in cache:
            prog = PY_PROGRAMS[name]
            work = tmp_path_factory.mktemp(f"ref-{name}")
            res = subprocess.run(py_argv(prog, work), capture_output=True, text=True,
                                 timeout=TOOL_TIMEOUT, stdin=subprocess.DEVNULL)
            assert res.returncode == 0, res.stderr
            cache[name] = prog.result(work, res.stdout)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(PY_PROGRAMS))
def test_python_program_ends_as_an_uninterrupted_run(
        session: Session, work: Path, tmp_path: Path, name: str,
        py_reference: Callable[[str], object]) -> None:
    """Run, checkpoint twice while it runs, SIGKILL, restore: the same end as without."""
    prog = PY_PROGRAMS[name]
    expected = py_reference(name)
    child = start_program(session, py_argv(prog, work))
    time.sleep(1.0)
    checkpoint(child.pid, tmp_path)
    time.sleep(1.0)
    snap = checkpoint(child.pid, tmp_path)
    assert child.popen.poll() is None, "the program ended before the second checkpoint"
    child.kill_and_reap()
    restart = restore(session, snap, child.pid, prog.script)
    code, out, err = restart.finish(TOOL_TIMEOUT)
    assert code == 0, f"restored {name} ended with {code}:\n{err}"
    assert prog.result(work, out) == expected


PIPE_TALKER = textwrap.dedent("""
    import os, signal, sys, time
    out, widowed = int(sys.argv[1]), int(sys.argv[2])
    stop = False
    def on_term(sig, frame):
        global stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    os.write(out, b"before\\n")
    print("READY", flush=True)
    while not stop:
        time.sleep(0.02)
    os.write(out, b"after\\n")
    try:
        os.write(widowed, b"x")
        print("FAIL: a pipe whose reader had closed took a write")
    except BrokenPipeError:
        print("OK")
""")


def test_pipes_to_other_processes(session: Session, tmp_path: Path) -> None:
    """A pipe whose reader is the test is reconnected to the test's end, which reads what the
    restored process writes; a pipe whose reader was closed still refuses writes (EPIPE)."""
    r, w = os.pipe()
    r2, w2 = os.pipe()
    os.close(r2)
    try:
        child = start_program(session, [sys.executable, "-c", PIPE_TALKER, str(w), str(w2)],
                              pass_fds=(w, w2))
    finally:
        os.close(w)
        os.close(w2)
    try:
        restart = cycle(session, child, tmp_path, PIPE_TALKER[:20])
        expect_ok(sigterm_and_finish(restart, child.pid), "pipe talker restored")
        os.set_blocking(r, False)
        assert os.read(r, 100) == b"before\nafter\n"
    finally:
        os.close(r)


def test_program_whose_executable_was_deleted(session: Session, binaries: dict[str, Path],
                                              work: Path, tmp_path: Path) -> None:
    """The program file is deleted while it runs (a rebuilt binary, a cleaned temporary
    directory): its mappings are saved whole and it comes back all the same."""
    exe = tmp_path / "doomed"
    shutil.copy2(binaries["threads"], exe)
    child = start_program(session, [str(exe), str(work)])
    exe.unlink()
    restart = cycle(session, child, tmp_path, "doomed")
    expect_ok(sigterm_and_finish(restart, child.pid), "threads restored without its file")


def test_pid_namespace_restores_while_the_pid_is_taken(session: Session, binaries: dict[str, Path],
                                                      work: Path, tmp_path: Path) -> None:
    """The original still runs (its PID is taken): a plain restore says so in one line;
    --pid-namespace brings the copy back in a fresh PID namespace, where it has its old PID,
    and both end intact."""
    child = c_program(session, binaries, "threads", work)
    snap = checkpoint(child.pid, tmp_path)
    res = subprocess.run([tool("opal-restart"), str(snap)], capture_output=True, text=True,
                         timeout=TOOL_TIMEOUT)
    assert res.returncode != 0 and res.stderr.count("\n") == 1, res.stderr
    assert f"PID {child.pid} is in use" in res.stderr and "--pid-namespace" in res.stderr
    restart = session.start([tool("opal-restart"), "-v", "--pid-namespace", str(snap)])
    outer = int(restart.err.wait_for(rb"restored process (\d+)", READY_TIMEOUT,
                                     "opal-restart").group(1))
    session.restored.append((outer, str(binaries["threads"])))
    nspid = next(line.split()[1:] for line in Path(f"/proc/{outer}/status").read_text()
                 .splitlines() if line.startswith("NSpid:"))
    assert nspid == [str(outer), str(child.pid)], nspid
    expect_ok(sigterm_and_finish(restart, outer), "threads restored in a PID namespace")
    child.popen.send_signal(signal.SIGTERM)
    expect_ok(child.finish(EXIT_TIMEOUT), "the original, still running")


def test_plain_opal_checkpoint_saves_a_plain_process_with_blcr(
        session: Session, binaries: dict[str, Path], work: Path, tmp_path: Path) -> None:
    """Without --mca crs, a process that does not run under pycrs can only be saved from
    outside: opal-checkpoint picks blcr (the highest priority that can serve) and says so."""
    child = c_program(session, binaries, "fd_file", work)
    res = subprocess.run([tool("opal-checkpoint"), "-v", "-w", str(tmp_path), str(child.pid)],
                         capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert res.returncode == 0, res.stderr
    assert "with blcr" in res.stderr
    snap = tmp_path / f"opal_snapshot_{child.pid}.ckpt"
    assert "# OPAL CRS Component: blcr" in (snap / "snapshot_meta.data").read_text()
    child.kill_and_reap()
    restart = restore(session, snap, child.pid, str(binaries["fd_file"]))
    expect_ok(sigterm_and_finish(restart, child.pid), "fd_file saved by plain opal-checkpoint")
