"""The ``mtcp`` CRS component: an in-process, user-space checkpoint kernel (see component.py).

The kernel is a plain shared library, ``libmtcp.so`` beside this file, built from
``native/kernel/`` by the package build (``kernel.h`` there is its map). A program gets it by
preloading (``LD_PRELOAD``, which ``pycrs run --mca crs mtcp PROGRAM`` sets), a Python process
also by ``load()``.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

from crs import params as _params

_params.register("crs_mtcp_restart", "program", "How opal-restart rebuilds an mtcp image: "
                 "'program' (the restart program pycrs-mtcp-restart: no ptrace, the process "
                 "rebuilds itself) or 'ptrace' (the restorer of the blcr component)")
_params.register("crs_mtcp_truncate_files", "1", "On restore, cut the process's own output files "
                 "back to their size at the checkpoint, as crs_blcr_truncate_files (mtcp)",
                 "bool")
_params.register("crs_mtcp_omit_fds", "", "Descriptors (comma-separated numbers) left out of the "
                 "image: the process makes them again itself after a restore (an MPI rank's "
                 "launcher connection); they are closed in the restored process")
_params.register("crs_mtcp_forked", "0", "Write the image from a copy-on-write child of the "
                 "process, so that it runs again once its state is recorded instead of waiting "
                 "for the whole image to be written (mtcp)", "bool")
_params.register("crs_mtcp_compress", "none", "Compress pages.img: none, fast (about memory "
                 "speed, gives up quickly on data that does not compress) or strong (smaller, "
                 "slower) (mtcp)")
COMPRESS = ("none", "fast", "strong")

LIBRARY = Path(__file__).with_name("libmtcp.so")
RESTART_PROGRAM = Path(__file__).with_name("pycrs-mtcp-restart")
_loaded: ctypes.CDLL | None = None


def library_path() -> Path:
    """Where the kernel library is (for LD_PRELOAD)."""
    return LIBRARY


def restart_program_path() -> Path:
    """Where the restart program is (built by the package build beside the kernel)."""
    return RESTART_PROGRAM


def load() -> bool:
    """Load the kernel into this Python process (ctypes, ABI mode); True when it serves
    requests. Its constructor starts the manager thread; loading twice is harmless."""
    global _loaded
    if _loaded is None:
        _loaded = ctypes.CDLL(str(LIBRARY))
    return bool(_loaded.mtcp_kernel_ready())


def socket_path(pid: int) -> Path:
    """The socket the kernel of process ``pid`` serves requests on, named by the PID the process
    has in its own PID namespace (where an ordinary user's restore puts it; the last of NSpid)."""
    from crs.endpoint import control_dir

    try:
        status = Path(f"/proc/{pid}/status").read_text()
        own = next(line.split()[-1] for line in status.splitlines() if line.startswith("NSpid:"))
    except (OSError, StopIteration):
        own = str(pid)
    return control_dir() / f"mtcp-{own}.sock"
