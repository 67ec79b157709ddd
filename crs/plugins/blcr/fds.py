"""File descriptors: what a process holds, saved from outside; rebuilt in the restorer's process
and handed to the restored one by number.

Descriptors that cannot be rebuilt (network sockets, devices, a pipe whose other end another
process holds) are refused at dump time with a message naming the descriptor.
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import stat
import struct
import termios
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from crs.framework import CRSError

from . import procfs
from ._native import ffi, lib
from .unixdiag import unix_peer

O_ACCMODE = 0o3
O_CLOEXEC = os.O_CLOEXEC
O_LARGEFILE = 0o100000  # the kernel's flag on x86-64 (userspace headers define it as 0)
SETFL_FLAGS = os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_DIRECT", 0) | os.O_NOATIME | 0o20000
OPEN_IGNORED = os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_NOCTTY | O_CLOEXEC
# reopening through /proc/self/fd follows a link: a file opened O_NOFOLLOW (shm_open does that)
# must lose the flag there, which only ever mattered when it was opened
REOPEN_IGNORED = OPEN_IGNORED | os.O_NOFOLLOW
# character devices a restored process can simply open again: null, zero, full, random, urandom
PLAIN_DEVICES = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9)}
TTY_MAJORS = {4, 5} | set(range(136, 144))
SO_PEEK_OFF = 42
TIOCGPTN, TIOCSPTLCK, TIOCGPTPEER = 0x80045430, 0x40045431, 0x5441


class Unrestorable(CRSError):
    """A descriptor the image could not bring back; the message names it."""


def _grab(pidfd: int, fd: int) -> int:
    ours = lib.blcr_pidfd_getfd(pidfd, fd)
    if ours < 0:
        raise Unrestorable(f"descriptor {fd}: cannot be duplicated for reading: "
                           f"{os.strerror(-ours)}")
    return ours


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            b = os.read(fd, 1 << 20)
        except BlockingIOError:
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def _pipe_data(pid: int, fd: int) -> tuple[bytes, int]:
    """Unread bytes of the pipe or FIFO at ``fd`` (left in place) and the pipe's capacity."""
    reader = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | O_CLOEXEC)
    try:
        cap = fcntl.fcntl(reader, 1032)  # F_GETPIPE_SZ
        n = ffi.new("long *")
        copy = lib.blcr_pipe_peek(reader, cap, n)
        if copy < 0:
            raise Unrestorable(f"descriptor {fd}: cannot copy the pipe's buffered data: "
                               f"{os.strerror(-copy)}")
        try:
            return _read_all(copy), cap
        finally:
            os.close(copy)
    finally:
        os.close(reader)


def _socket_queue(sock: socket.socket) -> list[tuple[bytes, str]]:
    """Messages (or stream bytes) waiting in a socket's receive queue with their senders' names,
    peeked, not taken."""
    before = sock.getsockopt(socket.SOL_SOCKET, SO_PEEK_OFF)
    sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
    found = []
    try:
        while True:
            try:
                data, sender = sock.recvfrom(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            if not data:
                break
            found.append((data, _unix_name(sender)))
    finally:
        sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, before)
    return found


def _unix_name(addr: str | bytes | None) -> str:
    """A Unix socket's name as the image keeps it: a path, an abstract name with its leading
    NUL, or "" when unnamed."""
    if isinstance(addr, bytes):
        return "\0" + addr[1:].decode("latin-1") if addr else ""
    return addr or ""


def _bind_unix(sock: socket.socket, name: str) -> None:
    """Bind to a name of the image; a socket file the dead original left at the path goes, one
    a live socket is bound to (the original still runs) stays and the bind fails."""
    if not name.startswith("\0"):
        with suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(name).st_mode) and not _bound_by_a_live_socket(name):
                os.unlink(name)
        sock.bind(name)
    else:
        sock.bind(b"\0" + name[1:].encode("latin-1"))


def _bound_by_a_live_socket(path: str) -> bool:
    with open("/proc/net/unix") as f:  # every Unix socket of the network namespace, names last
        return any(line.rstrip("\n").endswith(" " + path) for line in f)


def _parse_pair(text: str) -> tuple[int, int]:
    a, b = text.strip("() ").split(",")
    return int(a), int(b)


SaveFile = Callable[[str, bytes], str]


def collect(pid: int, pidfd: int, save: SaveFile,
            omit: set[int] = frozenset()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    """Describe every descriptor of ``pid`` but those in ``omit``; ``save(name, data)`` stores
    bulk data in the snapshot and returns the name to record. Raises Unrestorable naming the
    first descriptor that cannot be brought back."""
    fds = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd") if int(n) not in omit)
    records: list[dict[str, Any]] = []
    by_link: dict[str, list[int]] = {}
    seen: set[int] = set()  # inodes whose content is saved already (a FIFO or file opened twice)
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            info = procfs.fdinfo(pid, fd)
        except FileNotFoundError:
            continue  # closed meanwhile by nobody: the process is stopped, so it never existed
        flags = int(info["flags"], 8)
        rec: dict[str, Any] = {"fd": fd, "flags": flags & ~O_CLOEXEC,
                               "cloexec": bool(flags & O_CLOEXEC), "pos": int(info.get("pos", 0))}
        same = next((k for k in by_link.get(link, []) if lib.blcr_kcmp_file(pid, k, fd) == 0), None)
        by_link.setdefault(link, []).append(fd)
        if same is not None:
            rec.update(kind="dup", of=same)
        else:
            rec.update(_describe(pid, pidfd, fd, link, info, save, seen))
        records.append(rec)
    _pair_up(pid, records)
    mark_shared_files(pid, records)
    return records


def mark_shared_files(pid: int, records: list[dict[str, Any]]) -> None:
    """Mark (``shared``) the regular files the process writes that another process holds open
    too: a restore must not cut them back, nor write over what the others wrote since."""
    wanted: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "file" and r["flags"] & O_ACCMODE != os.O_RDONLY:
            try:
                st = os.stat(f"/proc/{pid}/fd/{r['fd']}")
            except OSError:
                continue
            r["dev_ino"] = [st.st_dev, st.st_ino]
            wanted.setdefault(r["path"], []).append(r)
    if not wanted:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pid:
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue  # gone, or not ours to look into
        for fd in fds:
            try:
                mine = wanted.get(os.readlink(f"/proc/{entry}/fd/{fd}"))
                if mine:
                    st = os.stat(f"/proc/{entry}/fd/{fd}")
                    for r in mine:
                        if r["dev_ino"] == [st.st_dev, st.st_ino]:
                            r["shared"] = True
            except OSError:
                continue


def _describe(pid: int, pidfd: int, fd: int, link: str, info: dict[str, str],
              save: SaveFile, seen: set[int]) -> dict[str, Any]:
    if link.startswith("pipe:["):
        return {"kind": "pipe", "ino": int(link[6:-1])}
    if link.startswith("socket:["):
        return _describe_socket(pidfd, fd, int(link[8:-1]))
    if link == "anon_inode:[eventfd]":
        return {"kind": "eventfd", "count": int(info["eventfd-count"], 16),
                "semaphore": info.get("eventfd-semaphore", "0") == "1"}
    if link == "anon_inode:[timerfd]":
        return {"kind": "timerfd", "clockid": int(info["clockid"]), "ticks": int(info["ticks"]),
                "settime_flags": int(info["settime flags"], 8),
                "value": _parse_pair(info["it_value"]),
                "interval": _parse_pair(info["it_interval"])}
    if link == "anon_inode:[signalfd]":
        return {"kind": "signalfd", "mask": int(info["sigmask"], 16)}
    if link == "anon_inode:[eventpoll]":
        return {"kind": "epoll", "watch": _epoll_watches(pid, fd, info)}
    if not link.startswith("/"):
        raise Unrestorable(f"descriptor {fd} is {link}, which blcr cannot restore")
    st = os.stat(f"/proc/{pid}/fd/{fd}")
    if link.startswith("/memfd:"):
        ours = _grab(pidfd, fd)
        try:
            data = os.pread(ours, st.st_size, 0) if st.st_size else b""
            seals = fcntl.fcntl(ours, 1034)  # F_GET_SEALS
        finally:
            os.close(ours)
        name = link[len("/memfd:"):].removesuffix(" (deleted)")
        return {"kind": "memfd", "name": name, "ino": st.st_ino, "size": st.st_size,
                "seals": seals, "data": save(f"fd-{fd}.data", data)}
    if stat.S_ISREG(st.st_mode):
        if link.endswith(" (deleted)") and st.st_nlink == 0:
            rec = {"kind": "deleted", "path": link[:-len(" (deleted)")], "ino": st.st_ino,
                   "mode": stat.S_IMODE(st.st_mode), "owner": [st.st_uid, st.st_gid],
                   "data": None}
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                ours = _grab(pidfd, fd)
                try:
                    data = os.pread(ours, st.st_size, 0) if st.st_size else b""
                finally:
                    os.close(ours)
                rec["data"] = save(f"fd-{fd}.data", data)
            return rec
        return {"kind": "file", "path": link, "size": st.st_size}
    if stat.S_ISDIR(st.st_mode):
        return {"kind": "dir", "path": link}
    if stat.S_ISFIFO(st.st_mode):
        if st.st_ino in seen:
            return {"kind": "fifo", "path": link, "ino": st.st_ino, "data": None}
        seen.add(st.st_ino)
        data, cap = _pipe_data(pid, fd)
        return {"kind": "fifo", "path": link, "ino": st.st_ino, "capacity": cap,
                "data": save(f"fd-{fd}.data", data)}
    if stat.S_ISCHR(st.st_mode):
        dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if dev[0] in TTY_MAJORS:
            return _describe_tty(pidfd, fd, link)
        if dev in PLAIN_DEVICES:
            return {"kind": "device", "path": link}
    raise Unrestorable(f"descriptor {fd} is {link}, a device or special file that blcr cannot "
                       "restore")


def _epoll_watches(pid: int, fd: int, info: dict[str, str]) -> list[list[int]]:
    """[number, events, data, holder] of every watch of epoll set ``fd``: the holder is a
    descriptor of the process holding the watched file, the number itself unless it was closed
    or given to another file since."""
    watches, seen = [], {}
    fds = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
    for tfd, events, data in procfs.epoll_targets(info):
        toff = seen[tfd] = seen.get(tfd, -1) + 1
        holder = next((h for h in [tfd, *fds]
                       if lib.blcr_kcmp_epoll_target(pid, h, fd, tfd, toff) == 0), None)
        if holder is None:
            raise Unrestorable(f"descriptor {fd} is an epoll set watching, as {tfd}, a file no "
                               "descriptor of the process holds any more")
        watches.append([tfd, events, data, holder])
    return watches


def _describe_tty(pidfd: int, fd: int, link: str) -> dict[str, Any]:
    """A terminal: a pseudo-terminal's master (its pair index, settings, window size), or a
    terminal device (paired with a master later, or given the restorer's own)."""
    rec: dict[str, Any] = {"kind": "tty", "path": link, "master": None, "index": None}
    if link.startswith("/dev/pts/") and link[9:].isdigit():
        rec["index"] = int(link[9:])
    if link in ("/dev/ptmx", "/dev/pts/ptmx"):
        ours = _grab(pidfd, fd)
        try:
            rec["index"] = struct.unpack("I", fcntl.ioctl(ours, TIOCGPTN, b"\0" * 4))[0]
            rec["master"] = True
            iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(ours)
            rec["termios"] = [iflag, oflag, cflag, lflag, ispeed, ospeed,
                              [c.hex() if isinstance(c, bytes) else c for c in cc]]
            rec["winsize"] = fcntl.ioctl(ours, termios.TIOCGWINSZ, b"\0" * 8).hex()
        finally:
            os.close(ours)
    return rec


def _describe_socket(pidfd: int, fd: int, ino: int) -> dict[str, Any]:
    ours = _grab(pidfd, fd)
    try:
        sock = socket.socket(fileno=ours)
    except OSError as exc:
        os.close(ours)
        raise Unrestorable(f"descriptor {fd}: not a readable socket ({exc})") from None
    try:
        family, kind = sock.family, sock.type
        if family != socket.AF_UNIX:
            try:
                where = sock.getsockname()
            except OSError:
                where = "?"
            name = {socket.AF_INET: "an IPv4", socket.AF_INET6: "an IPv6"}.get(family, "a")
            proto = {socket.SOCK_STREAM: "TCP", socket.SOCK_DGRAM: "UDP"}.get(kind, str(kind))
            return {"kind": "refuse", "why": f"descriptor {fd} is {name} {proto} socket "
                    f"({where}); network connections cannot be restored"}
        listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        bound = _unix_name(sock.getsockname())
        if listening:
            if not bound:
                return {"kind": "refuse", "why": f"descriptor {fd} is an unnamed listening socket"}
            return {"kind": "unix-listen", "type": int(kind), "path": bound}
        peer = unix_peer(ino)
        # an unconnected stream socket has no queue (and refuses even a peek)
        queue = _socket_queue(sock) if peer is not None or kind == socket.SOCK_DGRAM else []
        return {"kind": "unix", "type": int(kind), "ino": ino, "peer": peer, "name": bound,
                "queue": [[data.hex(), sender] for data, sender in queue],
                "sndbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
                "rcvbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)}
    finally:
        sock.close()


def _pair_up(pid: int, records: list[dict[str, Any]]) -> None:
    """Pipes and socketpairs come back whole only when both ends are in the process; the
    standard descriptors connected elsewhere are given the restorer's own."""
    pipe_ends: dict[int, list[dict[str, Any]]] = {}
    socks = {r["ino"]: r for r in records if r.get("kind") == "unix"}
    for r in records:
        if r.get("kind") == "pipe":
            pipe_ends.setdefault(r["ino"], []).append(r)
    masters = {r["index"] for r in records if r.get("kind") == "tty" and r["master"]}
    for r in records:
        kind = r.get("kind")
        if kind == "tty":
            if r["master"]:
                r.update(kind="pty-master")
            elif r["index"] in masters:
                r.update(kind="pty-slave")
            else:  # a terminal outside the process: the restorer's
                r.update(kind="stdio" if r["fd"] <= 2 else "terminal")
            continue
        if kind == "pipe":
            modes = {e["flags"] & O_ACCMODE for e in pipe_ends[r["ino"]]}
            if modes >= {os.O_RDONLY, os.O_WRONLY}:
                continue
            if r["fd"] <= 2:
                r.update(kind="stdio")
                continue
            holder = _pipe_holder(pid, r["ino"])
            if holder is None:  # the other end is closed everywhere: a pipe with one end
                r.update(kind="pipe-widowed")
            else:  # reopened through the holder's descriptor while it holds it
                r.update(kind="pipe-external", holder=holder)
            continue
        if kind == "unix" and r["peer"] is not None and r["peer"] not in socks:
            if r["fd"] <= 2:
                r.update(kind="stdio")
                continue
            raise Unrestorable(f"descriptor {r['fd']} is a Unix socket connected to another "
                               "process; only sockets connected within the process can be "
                               "restored")
        if kind == "unix" and not _a_pair(r, socks):
            _check_free_socket(r, socks)
            r.update(kind="unix-free")
        if kind == "refuse":
            if r["fd"] <= 2:
                r.update(kind="stdio")
                continue
            raise Unrestorable(r["why"])
    for ends in pipe_ends.values():
        reader = next((e for e in ends if e["flags"] & O_ACCMODE == os.O_RDONLY), None)
        if reader is not None and reader["kind"] in ("pipe", "pipe-widowed"):
            data, cap = _pipe_data(pid, reader["fd"])
            reader["data_bytes"], reader["capacity"] = data.hex(), cap


def _a_pair(r: dict[str, Any], socks: dict[int, dict[str, Any]]) -> bool:
    """Whether a Unix socket comes back as one end of a new socket pair: a connected stream (its
    peer is in the process), or two datagram sockets without names connected to each other."""
    if r["peer"] is None:
        return False
    if r["type"] != socket.SOCK_DGRAM:
        return True
    peer = socks[r["peer"]]
    return peer.get("peer") == r["ino"] and not r.get("name") and not peer.get("name")


def _check_free_socket(r: dict[str, Any], socks: dict[int, dict[str, Any]]) -> None:
    """A Unix socket made again, named and connected by name: what needs a name has one."""
    names = {s["name"] for s in socks.values() if s.get("name") and not _a_pair(s, socks)}
    if r["peer"] is not None and not socks[r["peer"]].get("name"):
        raise Unrestorable(f"descriptor {r['fd']} is a Unix datagram socket connected to an "
                           "unnamed socket that is not connected back; it cannot be restored")
    if r["queue"] and not r.get("name"):
        raise Unrestorable(f"descriptor {r['fd']} is an unnamed Unix socket holding datagrams "
                           "that cannot be sent to it again")
    for _, sender in r["queue"]:
        if sender and sender not in names:
            raise Unrestorable(f"descriptor {r['fd']} holds a datagram from {sender!r}, a "
                               "socket outside the process; its sender cannot be restored")


def _pipe_holder(pid: int, ino: int) -> list[int] | None:
    """[PID, descriptor, start time] of another process holding pipe ``ino``, if any."""
    want = f"pipe:[{ino}]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pid:
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") == want:
                    return [int(entry), int(fd), int(procfs.stat_field(int(entry), 22))]
        except OSError:
            continue  # gone, or not ours to look into
    return None


# -- restore side --------------------------------------------------------------------------------
class Rebuilt:
    """Descriptors rebuilt in this process for the restored one: ``moves`` are (ours, theirs,
    cloexec), ``epoll`` are (epoll fd, watched number, events, data, descriptor holding the
    watched file) as numbered in the restored process. ``close()`` drops our copies once the
    restored process has its own."""

    def __init__(self) -> None:
        self.moves: list[tuple[int, int, bool]] = []
        self.epoll: list[tuple[int, int, int, int, int]] = []
        self.ours: list[int] = []
        self.by_ino: dict[int, int] = {}  # image inode of a memfd or deleted file -> ours (RDWR)
        self.seals: list[tuple[int, int, int]] = []  # (its fd, seals, inode) to add once mapped
        self.ptys: dict[int, int] = {}  # pseudo-terminal index in the image -> our master
        self.given: set[int] = set()  # pipe ends handed to a descriptor already
        self.unix: dict[int, int] = {}  # image inode of a Unix socket made on its own -> ours
        # (ours, path, mode, uid, gid) of deleted files, set once every descriptor is open: a
        # read-only mode must not stop a writer from opening it again
        self.modes: list[tuple[int, str, int, int, int]] = []
        self.report: Report | None = None

    def own(self, fd: int) -> int:
        self.ours.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.ours:
            with suppress(OSError):
                os.close(fd)
        self.ours.clear()


def _setfl(fd: int, flags: int) -> None:
    cur = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, (cur & ~SETFL_FLAGS) | (flags & SETFL_FLAGS))


Report = Callable[[str], None]


def rebuild(records: list[dict[str, Any]], load: Callable[[str], bytes],
            truncate_files: bool, report: Report | None = None) -> Rebuilt:
    """Open, create and fill every descriptor of the image here; raise OSError or ValueError
    naming the descriptor that cannot be rebuilt. ``report`` is told of every file cut back."""
    out = Rebuilt()
    out.report = report
    mine: dict[int, int] = {}
    pipes: dict[int, tuple[int, int]] = {}
    pairs: dict[int, int] = {}
    try:
        for r in records:
            fd = r["fd"]
            try:
                ours = _rebuild_one(r, mine, pipes, pairs, records, load, truncate_files, out)
            except OSError as exc:
                where = (r.get("path") or r.get("name") or "").replace("\0", "@")
                raise OSError(exc.errno, f"descriptor {fd} ({r['kind']} {where}): "
                              f"{exc.strerror}") from None
            mine[fd] = ours
            out.moves.append((ours, fd, r["cloexec"]))
        _link_unix(records, out)
        for fd, path, mode, uid, gid in out.modes:
            try:
                if os.fstat(fd)[4:6] != (uid, gid):
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)  # after the owner: a change of owner clears set-user-ID
            except OSError as exc:
                raise OSError(exc.errno, f"deleted file {path}: giving it mode {mode:04o} and "
                              f"owner {uid}:{gid}: {exc.strerror}") from None
        for r in records:
            if r["kind"] == "epoll":
                for tfd, events, data, *holder in r["watch"]:
                    out.epoll.append((r["fd"], tfd, events, data, holder[0] if holder else tfd))
    except BaseException:
        out.close()
        raise
    return out


def _set_buffers(sock: socket.socket, r: dict[str, Any]) -> None:
    # the kernel doubles what it is given
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, r["sndbuf"] // 2)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, r["rcvbuf"] // 2)


def _link_unix(records: list[dict[str, Any]], out: Rebuilt) -> None:
    """Unix sockets made again on their own: their queued datagrams sent again, each from the
    socket of its sender's name (an unnamed one for an unnamed sender), before they connect
    (a connected socket takes datagrams from its peer alone); then they connect by name."""
    free = [r for r in records if r["kind"] == "unix-free"]
    by_name = {r["name"]: out.unix[r["ino"]] for r in free if r["name"]}
    for r in free:
        try:
            for data, sender in r["queue"]:
                to = _address(r["name"])
                if sender:
                    with _borrowed(by_name[sender]) as s:
                        s.sendto(bytes.fromhex(data), socket.MSG_DONTWAIT, to)
                else:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                        s.sendto(bytes.fromhex(data), socket.MSG_DONTWAIT, to)
        except OSError as exc:
            raise OSError(exc.errno, f"descriptor {r['fd']} (Unix socket {r['name']!r}): "
                          f"queueing its datagrams again: {exc.strerror}") from None
    for r in free:
        if r["peer"] is not None:
            peer = next(p for p in free if p["ino"] == r["peer"])
            try:
                with _borrowed(out.unix[r["ino"]]) as s:
                    s.connect(_address(peer["name"]))
            except OSError as exc:
                raise OSError(exc.errno, f"descriptor {r['fd']} (Unix socket): connecting to "
                              f"{peer['name']!r}: {exc.strerror}") from None


def _address(name: str) -> str | bytes:
    return b"\0" + name[1:].encode("latin-1") if name.startswith("\0") else name


@contextmanager
def _borrowed(fd: int) -> Iterator[socket.socket]:
    """A socket object over a descriptor that stays open afterwards."""
    s = socket.socket(fileno=fd)
    try:
        yield s
    finally:
        s.detach()


def _rebuild_one(r: dict[str, Any], mine: dict[int, int], pipes: dict[int, tuple[int, int]],
                 pairs: dict[int, int], records: list[dict[str, Any]],
                 load: Callable[[str], bytes], truncate_files: bool, out: Rebuilt) -> int:
    kind, flags = r["kind"], r["flags"]
    if kind == "dup":
        return mine[r["of"]]
    if kind == "stdio":
        return r["fd"]  # the restorer's own standard descriptor
    if kind == "terminal":
        mine_tty = next((fd for fd in (0, 1, 2) if os.isatty(fd)), None)
        if mine_tty is not None:
            return mine_tty
        return out.own(os.open(r["path"], (flags & ~OPEN_IGNORED) | os.O_NOCTTY | O_CLOEXEC))
    if kind == "pty-master":
        ours = out.own(os.open("/dev/ptmx", (flags & ~OPEN_IGNORED) | os.O_NOCTTY | O_CLOEXEC))
        fcntl.ioctl(ours, TIOCSPTLCK, struct.pack("i", 0))
        attrs = r["termios"]
        termios.tcsetattr(ours, termios.TCSANOW, attrs[:6] + [
            [bytes.fromhex(c) if isinstance(c, str) else c for c in attrs[6]]])
        fcntl.ioctl(ours, termios.TIOCSWINSZ, bytes.fromhex(r["winsize"]))
        out.ptys[r["index"]] = ours
        return ours
    if kind == "pty-slave":
        master = out.ptys.get(r["index"])
        if master is None:  # its master comes later in the table
            master = next(_rebuild_one(e, mine, pipes, pairs, records, load, truncate_files, out)
                          for e in records if e["kind"] == "pty-master"
                          and e["index"] == r["index"])
        return out.own(fcntl.ioctl(master, TIOCGPTPEER,
                                   (flags & ~OPEN_IGNORED) | os.O_NOCTTY | O_CLOEXEC))
    if kind in ("file", "dir", "device"):
        ours = out.own(os.open(r["path"], (flags & ~OPEN_IGNORED) | O_CLOEXEC))
        if kind == "file":
            os.lseek(ours, _file_position(ours, r, truncate_files, out.report), os.SEEK_SET)
        return ours
    if kind == "deleted":
        if r["ino"] not in out.by_ino:  # one unnamed file, however many times it was opened
            where = Path(r["path"]).parent
            tmp = out.own(os.open(where if where.is_dir() else "/tmp",
                                  os.O_TMPFILE | os.O_RDWR | O_CLOEXEC, 0o600))
            data = load(r["data"]) if r["data"] else b""
            if data:
                os.write(tmp, data)
            out.by_ino[r["ino"]] = tmp
            if "mode" in r:  # images before the mode was saved come back 0600
                out.modes.append((tmp, r["path"], r["mode"], *r["owner"]))
        tmp = out.by_ino[r["ino"]]
        ours = out.own(os.open(f"/proc/self/fd/{tmp}", (flags & ~REOPEN_IGNORED) | O_CLOEXEC))
        os.lseek(ours, r["pos"], os.SEEK_SET)
        return ours
    if kind == "memfd":
        # mtcp saves an object's content once, with its first descriptor
        obj = memfd_for(out, r["ino"], r["name"], r["size"], load(r["data"]) if r["data"] else b"")
        # an open file description of its own, with its own access mode and flags
        ours = out.own(os.open(f"/proc/self/fd/{obj}", (flags & ~REOPEN_IGNORED) | O_CLOEXEC))
        os.lseek(ours, r["pos"], os.SEEK_SET)
        if r["seals"] and all(ino != r["ino"] for _, _, ino in out.seals):
            out.seals.append((r["fd"], r["seals"], r["ino"]))  # once per object: they stick
        return ours
    if kind == "fifo":
        holder = out.own(os.open(r["path"], os.O_RDWR | os.O_NONBLOCK | O_CLOEXEC))
        data = load(r["data"]) if r["data"] else b""
        if data:
            os.write(holder, data)
        ours = out.own(os.open(f"/proc/self/fd/{holder}",
                               (flags & ~REOPEN_IGNORED) | os.O_NONBLOCK | O_CLOEXEC))
        _setfl(ours, flags)
        return ours
    if kind == "pipe":
        if r["ino"] not in pipes:
            rd, wr = os.pipe2(os.O_NONBLOCK | O_CLOEXEC)
            out.own(rd), out.own(wr)
            reader = next(e for e in records if e.get("ino") == r["ino"] and e["kind"] == "pipe"
                                    and e["flags"] & O_ACCMODE == os.O_RDONLY)
            with suppress(OSError):
                fcntl.fcntl(wr, 1031, reader.get("capacity", 65536))  # F_SETPIPE_SZ
            data = bytes.fromhex(reader.get("data_bytes", ""))
            if data:
                os.write(wr, data)
            pipes[r["ino"]] = (rd, wr)
        rd, wr = pipes[r["ino"]]
        end = rd if flags & O_ACCMODE == os.O_RDONLY else wr
        if end in out.given or flags & O_LARGEFILE:
            # another open file description of this end (opened again through /proc, which
            # is also what marks it O_LARGEFILE): it has flags of its own
            end = out.own(os.open(f"/proc/self/fd/{end}",
                                  (flags & ~REOPEN_IGNORED) | os.O_NONBLOCK | O_CLOEXEC))
        out.given.add(end)
        _setfl(end, flags)
        return end
    if kind == "pipe-widowed":
        rd, wr = os.pipe2(os.O_NONBLOCK | O_CLOEXEC)
        reading = flags & O_ACCMODE == os.O_RDONLY
        data = bytes.fromhex(r.get("data_bytes", ""))
        if reading and data:
            with suppress(OSError):
                fcntl.fcntl(wr, 1031, r.get("capacity", 65536))  # F_SETPIPE_SZ
            os.write(wr, data)
        os.close(wr if reading else rd)
        ours = out.own(rd if reading else wr)
        _setfl(ours, flags)
        return ours
    if kind == "pipe-external":
        hpid, hfd, start = r["holder"]
        where = f"/proc/{hpid}/fd/{hfd}"
        try:
            alive = (int(procfs.stat_field(hpid, 22)) == start
                     and os.readlink(where) == f"pipe:[{r['ino']}]")
        except OSError:
            alive = False
        if not alive:
            raise OSError(errno.EPIPE, f"a pipe to process {hpid}, which no longer holds it")
        ours = out.own(os.open(where, (flags & ~OPEN_IGNORED) | os.O_NONBLOCK | O_CLOEXEC))
        _setfl(ours, flags)
        return ours
    if kind == "unix":
        if r["ino"] not in pairs:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SocketKind(r["type"]))
            peer = next(e for e in records if e.get("ino") == r["peer"] and e["kind"] == "unix")
            for sock, rec in ((a, r), (b, peer)):
                _set_buffers(sock, rec)
            pairs[r["ino"]], pairs[r["peer"]] = out.own(a.detach()), out.own(b.detach())
            for rec, sender in ((r, pairs[r["peer"]]), (peer, pairs[r["ino"]])):
                for msg in rec["queue"]:  # [data, sender] (before: data alone)
                    os.write(sender, bytes.fromhex(msg if isinstance(msg, str) else msg[0]))
        ours = pairs[r["ino"]]
        _setfl(ours, flags)
        return ours
    if kind in ("unix-listen", "unix-free"):
        s = socket.socket(socket.AF_UNIX, socket.SocketKind(r["type"]))
        try:
            if kind == "unix-free":
                _set_buffers(s, r)
            if r.get("path", r.get("name")):
                _bind_unix(s, r.get("path", r.get("name")))
            if kind == "unix-listen":
                s.listen(socket.SOMAXCONN)
        except BaseException:
            s.close()
            raise
        ours = out.own(s.detach())
        if kind == "unix-free":
            out.unix[r["ino"]] = ours
        _setfl(ours, flags)
        return ours
    if kind == "eventfd":
        efd_flags = (os.EFD_SEMAPHORE if r["semaphore"] else 0) | os.EFD_CLOEXEC | os.EFD_NONBLOCK
        ours = out.own(os.eventfd(0, efd_flags))
        if r["count"]:  # the initial value is only 32 bits wide; a write takes the whole count
            os.eventfd_write(ours, r["count"])
        _setfl(ours, flags)
        return ours
    if kind == "timerfd":
        ours = lib.blcr_timerfd_create(r["clockid"], O_CLOEXEC | (flags & os.O_NONBLOCK))
        if ours < 0:
            raise OSError(-ours, os.strerror(-ours))
        out.own(ours)
        (vs, vns), (is_, ins) = r["value"], r["interval"]
        if (vs, vns) == (0, 0) and (is_, ins) != (0, 0):
            vs, vns = is_, ins  # expired with ticks unread: the kernel re-arms it on read
        rc = lib.blcr_timerfd_settime(ours, 0, vs, vns, is_, ins, r["ticks"])
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        return ours
    if kind == "signalfd":
        ours = lib.blcr_signalfd(r["mask"], O_CLOEXEC | (flags & os.O_NONBLOCK))
        if ours < 0:
            raise OSError(-ours, os.strerror(-ours))
        return out.own(ours)
    if kind == "epoll":
        ep = select.epoll()
        try:
            ours = out.own(os.dup(ep.fileno()))
        finally:
            ep.close()
        _setfl(ours, flags)
        return ours
    raise OSError(errno.EINVAL, f"unknown descriptor kind {kind!r} in the image")


def private_output(r: dict[str, Any]) -> bool:
    """Whether a file descriptor of the image is the process's own output, which a restore may
    cut back to its size at the checkpoint: written through a descriptor above 2, not in append
    mode, and held by no other process when the image was taken. Standard descriptors (a job's
    output file, a batch system's), append-mode logs and files others write are the user's."""
    return (r["flags"] & O_ACCMODE != os.O_RDONLY and r["fd"] > 2
            and not r["flags"] & os.O_APPEND and not r.get("shared"))


def _file_position(fd: int, r: dict[str, Any], truncate_files: bool,
                   report: Report | None) -> int:
    """Where the restored descriptor of a regular file stands. The process's own output is cut
    back to its size at the checkpoint (with ``truncate_files``: what it wrote later is undone);
    a file that is the user's is never cut, and a writer goes on after what was written since,
    never over it."""
    size, pos = os.fstat(fd).st_size, r["pos"]
    if r["flags"] & O_ACCMODE == os.O_RDONLY or r["flags"] & os.O_APPEND:
        return pos
    if not private_output(r):
        return max(pos, size)
    if truncate_files and size > r["size"]:
        os.ftruncate(fd, r["size"])
        if report:
            report(f"cut {r['path']} back to {r['size']} bytes (was {size}), as it was at the "
                   f"checkpoint (descriptor {r['fd']})")
    return pos


def memfd_for(out: Rebuilt, ino: int, name: str, size: int, data: bytes) -> int:
    """The memfd standing for shared memory object ``ino`` of the image (one per object, shared
    by its descriptors and mappings)."""
    if ino not in out.by_ino:
        fd = out.own(os.memfd_create(name or "pycrs-shm", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING))
        os.ftruncate(fd, size)
        if data:
            os.pwrite(fd, data, 0)
        out.by_ino[ino] = fd
    return out.by_ino[ino]
