"""Fidelity classes of issue 13. Each program of ``blcr_programs/`` that holds one class of
state (file status flags, madvise flags, modes of deleted files, Unix sockets, large eventfd
counters, epoll sets with dups) goes through the cycles of test_blcr_states.py under blcr. Here
each is run with the mtcp kernel preloaded: where mtcp restores the class, checkpoint, SIGKILL
and restart end with the program's own OK; where it cannot, the checkpoint is refused with one
line naming the descriptor and why, and the process goes on unharmed. And the Unix sockets blcr
cannot bring back are refused by descriptor.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import tool
from helpers import Session, start_program
from test_blcr_states import (
    EXIT_TIMEOUT,
    READY_TIMEOUT,
    TOOL_TIMEOUT,
    compile_programs,
    expect_ok,
    refused_checkpoint,
    restore,
    sigterm_and_finish,
)
from test_mtcp import checkpoint, one_line_error, preloaded, wait_for_kernel

pytestmark = pytest.mark.usefixtures("private_home")

# program -> its arguments after the work directory
RESTORED = {"fd_flags": ["mtcp-kinds"], "mem_madvise": [], "fd_eventfd": [], "fd_epoll_dup": [],
            "fd_deleted_mode": [], "fd_deleted": [], "mem_shared": []}
# program -> (arguments, what the refusal line must say)
REFUSED = {
    "fd_flags": ([], "descriptor 43 is a Unix socket"),
    "fd_unix": ([], "descriptor 50 is a Unix socket"),
}


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return compile_programs(tmp_path_factory, sorted(set(RESTORED) | set(REFUSED)))


def under_mtcp(session: Session, exe: Path, work: Path, args: list[str]):  # noqa: ANN201
    work.mkdir()
    child = start_program(session, [str(exe), str(work), *args], env=preloaded(),
                          timeout=READY_TIMEOUT)
    wait_for_kernel(child.pid)
    return child


@pytest.mark.parametrize("name", list(RESTORED))
def test_class_survives_kill_and_restart_under_mtcp(session: Session, binaries: dict[str, Path],
                                                    tmp_path: Path, name: str) -> None:
    child = under_mtcp(session, binaries[name], tmp_path / "work", RESTORED[name])
    snap = checkpoint(child.pid, tmp_path / "snaps")
    child.kill_and_reap()
    restart = restore(session, snap, child.pid, str(binaries[name]))
    expect_ok(sigterm_and_finish(restart, child.pid), f"{name} restored by mtcp")


@pytest.mark.parametrize("name", list(REFUSED))
def test_class_mtcp_cannot_restore_is_refused_by_name(session: Session,
                                                      binaries: dict[str, Path], tmp_path: Path,
                                                      name: str) -> None:
    args, says = REFUSED[name]
    child = under_mtcp(session, binaries[name], tmp_path / "work", args)
    where = tmp_path / "snaps"
    res = subprocess.run([tool("opal-checkpoint"), "--mca", "crs", "mtcp", "-w", str(where),
                          str(child.pid)], capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    line = one_line_error(res, "opal-checkpoint")
    assert says in line and "mtcp cannot restore" in line, line
    assert not where.exists() or not list(where.iterdir())
    assert child.popen.poll() is None, "the process ended after the refused checkpoint"
    child.popen.send_signal(signal.SIGTERM)
    expect_ok(child.finish(EXIT_TIMEOUT), f"{name} after the refused checkpoint")


DGRAM_HOLDER = textwrap.dedent("""
    import signal, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sys.argv[1])
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    print(s.fileno(), "READY", sep="\\n", flush=True)
    signal.sigwait([signal.SIGTERM])
    print(s.recv(100).decode(), "OK", sep="\\n", flush=True)
""")


def test_datagram_from_outside_the_process_refused_by_blcr(session: Session,
                                                          tmp_path: Path) -> None:
    """A datagram queued at a named socket, sent by a named socket of another process: blcr
    cannot give it its sender again, so the checkpoint names the descriptor and refuses."""
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    child = start_program(session, [sys.executable, "-c", DGRAM_HOLDER, str(inbox)],
                          timeout=READY_TIMEOUT)
    fd = int(child.out.wait_for(rb"^(\d+)$", READY_TIMEOUT, "its descriptor").group(1))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.bind(str(outbox))
        sender.sendto(b"hello", str(inbox))
        line = refused_checkpoint(child.pid, tmp_path / "snap")
    assert f"descriptor {fd} holds a datagram from '{outbox}'" in line, line
    child.popen.send_signal(signal.SIGTERM)
    code, out, err = child.finish(EXIT_TIMEOUT)
    assert code == 0 and out.split()[-2:] == ["hello", "OK"], (code, out, err)


SEALED = textwrap.dedent("""
    import fcntl, os, signal
    fd = os.memfd_create("sealed", os.MFD_ALLOW_SEALING)
    os.write(fd, b"data")
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    print(fd, "READY", sep="\\n", flush=True)
    signal.sigwait([signal.SIGTERM])
    print("OK", flush=True)
""")


def test_memfd_sealed_against_writes_refused_by_mtcp(session: Session, tmp_path: Path) -> None:
    """mtcp restores memfds, but not one sealed against writes (the seal would forbid the
    restored process's shared mappings): refused by descriptor, the process goes on."""
    child = start_program(session, [sys.executable, "-c", SEALED], env=preloaded(),
                          timeout=READY_TIMEOUT)
    fd = int(child.out.wait_for(rb"^(\d+)$", READY_TIMEOUT, "its descriptor").group(1))
    wait_for_kernel(child.pid)
    res = subprocess.run([tool("opal-checkpoint"), "--mca", "crs", "mtcp", "-w",
                          str(tmp_path / "snaps"), str(child.pid)], capture_output=True,
                         text=True, timeout=TOOL_TIMEOUT)
    line = one_line_error(res, "opal-checkpoint")
    assert f"descriptor {fd} is a memfd sealed against writes" in line, line
    child.popen.send_signal(signal.SIGTERM)
    expect_ok(child.finish(EXIT_TIMEOUT), "the sealed memfd's holder after the refusal")
