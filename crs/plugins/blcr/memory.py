"""Memory of a process: which mappings an image records and how, and the bulk page transfer.

Page data goes to one file, ``pages.img``: the pages of every run, in address order, with a
CRC-32C per MiB in ``pages.crc``. Only pages the process owns are saved: present or swapped
pages of anonymous mappings, pages copied on write in private file mappings. Everything else
comes back from the files themselves, or is zero.
"""
from __future__ import annotations

import os
import struct

from crs.framework import CRSError
from crs.snapshot import check_chunks

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
    if v.path.startswith("/SYSV"):
        raise MappingError(f"mapping {v.start:#x}-{v.end:#x} is a System V shared memory segment "
                           f"({v.path.split()[0]}), which cannot be restored")
    if v.shared:
        return "shmem" if deleted or v.path.startswith("/memfd:") else "shared-file"
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


def dump_pages(pid: int, out_fd: int, parts: list[tuple[list[tuple[int, int]], bool]]) -> bytes:
    """Write the runs of every part ((runs, readable)) to ``out_fd`` in order; return the
    packed CRC-32C list (one per MiB of output)."""
    triples = [(a, n, int(not readable)) for runs, readable in parts for a, n in runs]
    total = sum(n for _, n, _ in triples) * PAGE
    ncrcs = total // CHUNK + 1
    crcs = ffi.new("uint32_t[]", ncrcs)
    pos = ffi.new("uint64_t *", 0)
    flat = ffi.new("uint64_t[]", max(3 * len(triples), 1))
    for i, t in enumerate(triples):
        flat[3 * i:3 * i + 3] = t
    mem_fd = -1
    if any(u for _, _, u in triples):
        mem_fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        check(lib.blcr_dump_runs(pid, mem_fd, out_fd, flat, len(triples), pos, crcs, ncrcs,
                                 CHUNK), f"saving the memory of process {pid}")
    finally:
        if mem_fd >= 0:
            os.close(mem_fd)
    used = (int(pos[0]) + CHUNK - 1) // CHUNK
    return struct.pack(f"<{used}I", *crcs[0:used])


def verify_pages(fd: int, size: int, crcs: bytes, image: str) -> None:
    """Check every MiB of ``pages.img`` against its CRC-32C (the GIL is released meanwhile)."""
    check_chunks(fd, size, crcs, CHUNK, image)


def unpack_pages(in_fd: int, out_fd: int, raw: int, image: str) -> None:
    """Decompress the frames of a compressed ``pages.img`` into the page stream (``raw``
    bytes); a damaged frame is named (the GIL is released meanwhile)."""
    frame = ffi.new("uint64_t *", 0)
    ret = lib.blcr_lzp_unpack(in_fd, out_fd, raw, frame)
    if ret == -74:  # EBADMSG
        raise MappingError(f"{image}: snapshot file is corrupted (compressed frame "
                           f"{int(frame[0])} is malformed)")
    if ret == -61:  # ENODATA
        raise MappingError(f"{image}: snapshot file is truncated (it ends in or before "
                           f"compressed frame {int(frame[0])})")
    check(ret, f"decompressing {image}")


MAX_READ = 1 << 30  # one read moves at most 2 GiB - 4 KiB; keep each batch well below


def read_batches(runs: list[tuple[int, int]],
                 max_iov: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """The runs as (file offset, [(address, bytes)]) batches of at most ``max_iov`` pieces and
    MAX_READ bytes, each one preadv of the image into the process."""
    batches: list[tuple[int, list[tuple[int, int]]]] = []
    offset = size = 0
    for addr, pages in runs:
        left = pages * PAGE
        while left:
            n = min(left, MAX_READ)
            if not batches or len(batches[-1][1]) >= max_iov or size + n > MAX_READ:
                batches.append((offset, []))
                size = 0
            batches[-1][1].append((addr, n))
            addr, left, offset, size = addr + n, left - n, offset + n, size + n
    return batches
