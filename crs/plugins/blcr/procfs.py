"""What /proc says about a process: its threads, memory map, mm fields, descriptors and state."""
from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Vma:
    """One line of /proc/PID/smaps with its VmFlags."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str
    flags: set[str] = field(default_factory=set)

    @property
    def shared(self) -> bool:
        return self.perms[3] == "s"

    @property
    def prot(self) -> int:
        return ((1 if self.perms[0] == "r" else 0) | (2 if self.perms[1] == "w" else 0)
                | (4 if self.perms[2] == "x" else 0))

    @property
    def length(self) -> int:
        return self.end - self.start


def read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def vmas(pid: int) -> list[Vma]:
    """The memory map, in address order, with each mapping's VmFlags."""
    found: list[Vma] = []
    for line in read_text(f"/proc/{pid}/smaps").splitlines():
        head = line.split(None, 5)
        if line.startswith("VmFlags:"):
            found[-1].flags = set(line.split()[1:])
        elif head and "-" in head[0] and len(head) >= 5 and ":" in head[3]:
            lo, hi = head[0].split("-")
            found.append(Vma(int(lo, 16), int(hi, 16), head[1], int(head[2], 16), head[3],
                             int(head[4]), head[5] if len(head) > 5 else ""))
    return found


def threads(pid: int) -> list[int]:
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def stat_field(pid: int, n: int) -> str:
    """Field ``n`` (counted from 1, as in proc(5)) of /proc/PID/stat."""
    text = read_text(f"/proc/{pid}/stat")
    return text[text.rindex(")") + 2:].split()[n - 3]


def state(pid: int) -> str:
    """The one-letter state of /proc/PID/stat (R, S, T, Z...), or "" when it is gone."""
    try:
        text = read_text(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return text[text.rindex(")") + 2]


def status(pid: int) -> dict[str, str]:
    out = {}
    for line in read_text(f"/proc/{pid}/status").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


MM_FIELDS = ("start_code", "end_code", "start_stack", "start_data", "end_data", "start_brk",
             "arg_start", "arg_end", "env_start", "env_end")


def mm_fields(pid: int) -> dict[str, int]:
    """The mm's code, data, brk, stack, argument and environment bounds from /proc/PID/stat."""
    text = read_text(f"/proc/{pid}/stat")
    rest = text[text.rindex(")") + 2:].split()  # fields from 3 on; comm may hold spaces
    at = {"start_code": 26, "end_code": 27, "start_stack": 28, "start_data": 45, "end_data": 46,
          "start_brk": 47, "arg_start": 48, "arg_end": 49, "env_start": 50, "env_end": 51}
    return {k: int(rest[i - 3]) for k, i in at.items()}


def fdinfo(pid: int, fd: int) -> dict[str, str]:
    """/proc/PID/fdinfo/FD as key: value; repeated keys (epoll's tfd) are joined by newlines."""
    out: dict[str, str] = {}
    for line in read_text(f"/proc/{pid}/fdinfo/{fd}").splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        out[key] = out[key] + "\n" + value if key in out else value
    return out


def epoll_targets(info: dict[str, str]) -> list[tuple[int, int, int]]:
    """(fd, events, data) of every descriptor an epoll instance watches."""
    found = []
    for line in info.get("tfd", "").splitlines():
        parts = line.split()
        fd = int(parts[0])
        kv = dict(zip(parts[1::2], parts[2::2], strict=False))
        found.append((fd, int(kv["events:"], 16), int(kv["data:"], 16)))
    return found


def posix_timers(pid: int) -> list[dict[str, str]]:
    """Entries of /proc/PID/timers (id, signal, notify, clockid)."""
    timers: list[dict[str, str]] = []
    try:
        text = read_text(f"/proc/{pid}/timers")
    except FileNotFoundError:
        return timers
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "ID":
            timers.append({})
        timers[-1][key] = value.strip()
    return timers
