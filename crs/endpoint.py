"""Control endpoints: private Unix sockets through which tools talk to processes under pycrs.

Each process under pycrs listens on ``<control dir>/crs-<PID>.sock``; the directory belongs to
the user and is mode 0700, and both ends check the peer's credentials, so only the owner of a
process can reach it. Messages are JSON objects, one per line: the tool sends one request, the
process answers with events until the last one (``done`` or ``error``).
"""
from __future__ import annotations

import json
import os
import socket
import stat
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
FINAL_EVENTS = ("done", "error")


class EndpointError(Exception):
    """A tool could not reach a process (or the process broke off); the message says why."""


def control_dir() -> Path:
    """The per-user directory that holds every control socket of this user."""
    return Path(os.environ.get("PYCRS_CONTROL_DIR") or f"/tmp/pycrs-{os.getuid()}")


def ensure_control_dir() -> Path:
    """Create the control directory, refusing one that another user could tamper with."""
    d = control_dir()
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = d.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise EndpointError(f"{d}: control directory must be ours and private (mode 0700)")
    return d


def process_socket(pid: int) -> Path:
    return control_dir() / f"crs-{pid}.sock"


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    return _CRED.unpack(raw)  # type: ignore[return-value]


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def messages(sock: socket.socket) -> Iterator[dict[str, Any]]:
    """The JSON messages arriving on ``sock`` until the peer closes it."""
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line)


Handler = Callable[[socket.socket, dict[str, Any]], None]


def answer(conn: socket.socket, handlers: dict[str, Handler]) -> None:
    """Serve one tool's connection: check it comes from our user, read its request and pass it
    to the handler of its ``op``. Closes the connection; a tool that goes away is not an error."""
    with conn:
        try:
            _, uid, _ = peer_credentials(conn)
            if uid != os.getuid():
                send(conn, {"event": "error", "message": "permission denied"})
                return
            message = next(messages(conn), None)
            if message is None:
                return
            handler = handlers.get(str(message.get("op")))
            if handler is None:
                send(conn, {"event": "error", "message": f"unknown request {message.get('op')!r}"})
                return
            handler(conn, message)
        except (OSError, ValueError):
            pass


def stale_sockets(directory: Path | None = None) -> list[Path]:
    """The sockets in the control directory whose process (``<name>-<PID>.sock``) is gone and
    that nobody serves: what processes killed before they could remove theirs left behind."""
    stale = []
    try:
        entries = sorted((directory or control_dir()).glob("*-*.sock"))
    except OSError:
        return []
    for path in entries:
        pid = path.stem.rsplit("-", 1)[1]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))  # served all the same (a process of another PID view)
            except ConnectionRefusedError:
                stale.append(path)
            except OSError:
                pass
    return stale


def remove_stale_sockets(directory: Path | None = None) -> list[Path]:
    """Remove stale_sockets(); return those removed."""
    removed = []
    for path in stale_sockets(directory):
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def listen(path: Path) -> socket.socket:
    """Bind a listening socket at ``path``, replacing a stale socket file of an earlier process;
    the stale sockets of other dead processes are removed too."""
    ensure_control_dir()
    remove_stale_sockets(path.parent)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


def connect(pid: int, what: str = "process", path: Path | None = None,
            hint: str = "start it with 'pycrs run' or with checkpoint/restart enabled"
            ) -> socket.socket:
    """Connect to the control endpoint of ``pid`` (by default its process socket), or raise
    EndpointError saying why we cannot."""
    if pid <= 0 or not Path(f"/proc/{pid}").exists():
        raise EndpointError(f"no {what} with PID {pid}")
    st = os.stat(f"/proc/{pid}")
    if st.st_uid != os.getuid():
        raise EndpointError(f"{what} {pid} belongs to another user (uid {st.st_uid})")
    path = path or process_socket(pid)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise EndpointError(f"{what} {pid} is not running under pycrs (no control endpoint "
                            f"{path}); {hint}") from None
    peer_pid, peer_uid, _ = peer_credentials(sock)
    if peer_pid != pid or peer_uid != os.getuid():
        sock.close()
        raise EndpointError(f"control endpoint {path} is not served by {what} {pid}")
    return sock


def request(
    sock: socket.socket, message: dict[str, Any],
    on_event: Callable[[dict[str, Any]], None] | None = None, what: str = "process",
) -> dict[str, Any]:
    """Send one request on a connected endpoint and return its final event, passing the others
    to ``on_event``. Closes the socket."""
    with sock:
        send(sock, message)
        for event in messages(sock):
            if event.get("event") in FINAL_EVENTS:
                return event
            if on_event:
                on_event(event)
    raise EndpointError(f"{what} ended or broke off before answering")
