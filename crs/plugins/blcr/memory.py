"""Memory of a process: which mappings an image records and how, and the bulk page transfer.

Page data goes to one file, ``pages.img``: the pages of every run, in address order, with a
CRC-32C per MiB in ``pages.crc``. Only pages the process owns are saved: present or swapped
pages of anonymous mappings, pages copied on write in private file mappings. Everything else
comes back from the files themselves, or is zero.
"""
from __future__ import annotations

from crs.framework import CRSError

import os
import struct
from dataclasses import dataclass
from typing import Any

from ._native import ffi, lib
from .procfs import Vma
from .tracer import check

PAGE = 4096
CHUNK = 1 << 20
SKIPPED = {"[vsyscall]", "[vvar]", "[vvar_vclock]"}
SPECIAL_FLAGS = {"io": "a device's I/O memory", "pf": "raw device pages", "ht": "hugetlbfs pages"}
MADVISE = {"dc": 10, "wf": 18, "hg": 14, "nh": 15, "dd": 16}  # VmFlags -> MADV_* to apply


class MappingError(CRSError):
    """A mapping the image cannot record."""


def classify(v: Vma) -> str:
    """anon, file (private mapping of a file), shared-file, shmem (shared memory without a file
    that lasts: shared anonymous, memfd, deleted files), vdso, or skip."""
    if v.path in SKIPPED:
        return "skip"
    if v.path == "[vdso]":
        return "vdso"
    for flag, what in SPECIAL_FLAGS.items():
        if flag in v.flags:
            raise MappingError(f"mapping {v.start:#x}-{v.end:#x} ({v.path or 'anonymous'}) "
                               f"holds {what}, which cannot be restored")
    if not v.path.startswith("/"):
        if v.shared:
            return "shmem"
        if v.path.startswith("[") and v.path not in ("[heap]", "[stack]") and \
                not v.path.startswith("[anon:") and not v.path.startswith("[anon_shmem:"):
            raise MappingError(f"mapping {v.start:#x}-{v.end:#x} is {v.path}, which cannot "
                               "be restored")
        return "anon"
    deleted = v.path.endswith(" (deleted)")
    if v.shared:
        return "shmem" if (deleted or v.path.startswith("/memfd:")
                           or v.path.startswith("/SYSV")) else "shared-file"
    if deleted or v.path.startswith("/memfd:") or v.path.startswith("/dev/"):
        return "anon-copy"  # private copy of something that will not be there: save it all
    return "file"


def runs_of(pid: int, pagemap_fd: int, v: Vma, kind: str) -> list[tuple[int, int]]:
    """(address, pages) runs of ``v`` whose content the image must carry."""
    if kind == "anon-copy":
        return [(v.start, v.length // PAGE)]
    if kind not in ("anon", "file"):
        return []
    cap = v.length // PAGE // 2 + 1
    buf = ffi.new("uint64_t[]", 2 * cap)
    n = check(lib.blcr_scan_pages(pagemap_fd, v.start, v.end, int(kind == "file"), buf, cap),
              f"reading the page map of process {pid}")
    return [(int(buf[2 * i]), int(buf[2 * i + 1])) for i in range(n)]


def _flat(runs: list[tuple[int, int]]) -> Any:
    arr = ffi.new("uint64_t[]", max(2 * len(runs), 1))
    for i, (addr, n) in enumerate(runs):
        arr[2 * i], arr[2 * i + 1] = addr, n
    return arr


def dump_pages(pid: int, out_fd: int, parts: list[tuple[list[tuple[int, int]], bool]]) -> bytes:
    """Write the runs of every part ((runs, readable)) to ``out_fd`` in order; return the
    packed CRC-32C list (one per MiB of output)."""
    total = sum(n for runs, _ in parts for _, n in runs) * PAGE
    ncrcs = total // CHUNK + 1
    crcs = ffi.new("uint32_t[]", ncrcs)
    pos = ffi.new("uint64_t *", 0)
    mem_fd = -1
    try:
        for runs, readable in parts:
            if not runs:
                continue
            if not readable and mem_fd < 0:
                mem_fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            check(lib.blcr_dump_runs(pid, -1 if readable else mem_fd, out_fd, _flat(runs),
                                     len(runs), pos, crcs, ncrcs, CHUNK),
                  f"saving the memory of process {pid}")
    finally:
        if mem_fd >= 0:
            os.close(mem_fd)
    used = (int(pos[0]) + CHUNK - 1) // CHUNK
    return struct.pack(f"<{used}I", *crcs[0:used])


def load_pages(pid: int, in_fd: int, runs: list[tuple[int, int]], crcs: bytes,
               image: str) -> None:
    """Read every run from the image and put it into process ``pid``, checking each MiB."""
    if not runs:
        return
    n = len(crcs) // 4
    table = ffi.new("uint32_t[]", max(n, 1))
    for i, c in enumerate(struct.unpack(f"<{n}I", crcs)):
        table[i] = c
    pos, bad = ffi.new("uint64_t *", 0), ffi.new("uint64_t *", 0)
    ret = lib.blcr_load_runs(pid, in_fd, _flat(runs), len(runs), pos, table, n, CHUNK, bad)
    if ret == -74:  # EBADMSG
        raise MappingError(f"{image}: snapshot file is corrupted (checksum mismatch in MiB "
                           f"{int(bad[0])})")
    if ret == -61:  # ENODATA
        raise MappingError(f"{image}: snapshot file is truncated")
    check(ret, f"loading the memory of process {pid}")
