"""cffi build script for crs.native._fsops, run by the package build."""
from pathlib import Path

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    int pycrs_rename_exchange(const char *a, const char *b);
    int pycrs_rename_noreplace(const char *from, const char *to);
    """
)
ffibuilder.set_source("crs.native._fsops", Path(__file__).with_name("fsops.c").read_text())

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
