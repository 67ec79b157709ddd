"""Narrow Python interface over pycrs's native helpers (C, built by cffi at install time)."""
from __future__ import annotations

import errno
import os

from ._fsops import lib as _lib
from ._imagecheck import ffi as _check_ffi, lib as _check_lib


def _check(rc: int, what: str, a: bytes, b: bytes) -> None:
    if rc != 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}", os.fsdecode(a), None, os.fsdecode(b))


def rename_exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
    """Atomically swap two existing paths (renameat2 with RENAME_EXCHANGE)."""
    ea, eb = os.fsencode(a), os.fsencode(b)
    _check(_lib.pycrs_rename_exchange(ea, eb), "rename exchange", ea, eb)


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename src to dst; fail with EEXIST rather than replace an existing dst."""
    es, ed = os.fsencode(src), os.fsencode(dst)
    _check(_lib.pycrs_rename_noreplace(es, ed), "rename", es, ed)


class Counter:
    """A count of bytes that native code advances while it runs, read from another thread."""

    def __init__(self) -> None:
        self._cell = _check_ffi.new("uint64_t *", 0)

    @property
    def value(self) -> int:
        return int(self._cell[0])


def verify_chunks(fd: int, size: int, crcs: bytes, chunk: int,
                  checked: Counter | None = None) -> int | None:
    """Check the CRC-32C of every ``chunk`` bytes of the file open at ``fd`` (``size`` bytes)
    against ``crcs`` (little-endian uint32s); None if all match, else the first chunk that does
    not. Raise OSError if the file cannot be read. ``checked`` counts the bytes found good."""
    n = len(crcs) // 4
    table = _check_ffi.new("uint32_t[]", max(n, 1))
    _check_ffi.memmove(table, crcs[: 4 * n], 4 * n)
    bad = _check_ffi.new("uint64_t *", 0)
    cell = checked._cell if checked is not None else _check_ffi.NULL
    rc = _check_lib.pycrs_verify_chunks(fd, size, table, n, chunk, bad, cell)
    if rc == -errno.EBADMSG:
        return int(bad[0])
    if rc != 0:
        raise OSError(-rc, f"checking an image file: {os.strerror(-rc)}")
    return None


__all__ = ["Counter", "rename_exchange", "rename_noreplace", "verify_chunks"]
