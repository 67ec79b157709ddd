"""Narrow Python interface over pycrs's native helpers (C, built by cffi at install time)."""
from __future__ import annotations

import os

from ._fsops import lib as _lib


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


__all__ = ["rename_exchange", "rename_noreplace"]
