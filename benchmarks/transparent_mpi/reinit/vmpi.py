"""ctypes access to libvmpi's control interface (teardown, rebuild, counts, adopt)."""
import ctypes, os
from mpi4py import MPI

_lib = None


def lib():
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL(None)  # the preloaded libvmpi is in the global scope
        if not hasattr(_lib, "vmpi_teardown"):
            raise RuntimeError("libvmpi is not preloaded (LD_PRELOAD)")
        for f in ("vmpi_last_teardown", "vmpi_last_rebuild"):
            pass
    return _lib


def teardown():
    rc = lib().vmpi_teardown()
    if rc:
        raise RuntimeError(f"vmpi_teardown: {rc}")
    return ctypes.c_double.in_dll(lib(), "vmpi_last_teardown").value


def rebuild():
    rc = lib().vmpi_rebuild()
    if rc:
        raise RuntimeError(f"vmpi_rebuild: {rc}")
    return ctypes.c_double.in_dll(lib(), "vmpi_last_rebuild").value


def close_launcher_fds():
    lib().vmpi_close_launcher_fds()


def adopt_parent():
    if lib().vmpi_adopt_parent():
        raise RuntimeError("vmpi_adopt_parent failed")


def counts(comm):
    n = comm.Get_size()
    s, r = (ctypes.c_uint64 * n)(), (ctypes.c_uint64 * n)()
    h = MPI._handleof(comm)
    arg = ctypes.c_void_p(h) if MPI.get_vendor()[0] == "Open MPI" else ctypes.c_int(h)
    if lib().vmpi_counts(arg, s, r) < 0:
        raise RuntimeError("unknown communicator")
    return list(s), list(r)
