"""cffi build script for crs.native._imagecheck (the CRC-per-chunk check of image files), run by
the package build."""
import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef(
    """
    long pycrs_verify_chunks(int fd, uint64_t size, const uint32_t *crcs, long ncrcs,
                             uint64_t chunk, uint64_t *bad_chunk, uint64_t *checked);
    """
)
ffibuilder.set_source(
    "crs.native._imagecheck",
    "long pycrs_verify_chunks(int fd, uint64_t size, const uint32_t *crcs, long ncrcs,\n"
    "                         uint64_t chunk, uint64_t *bad_chunk, volatile uint64_t *checked);",
    sources=[os.path.relpath(HERE / "imagecheck.c")],  # relative to the build, as setuptools wants
    include_dirs=[str(HERE)],
    extra_compile_args=["-msse4.2", "-O2", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
