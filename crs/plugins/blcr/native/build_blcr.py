"""cffi build script for crs.plugins.blcr._native, run by the package build."""
import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def api(header: Path) -> str:
    """What Python sees of the module: the declarations of blcr.h, less its preprocessor lines and
    the internal (hidden) functions its units share."""
    return "\n".join(line for line in header.read_text().splitlines()
                     if not line.startswith(("#", "BLCR_INTERNAL")))


ffibuilder = FFI()
ffibuilder.cdef(api(HERE / "blcr.h"))

# the units of the module, one concern each (blcr.h says which holds what); relative to where the
# build runs, as setuptools wants them
UNITS = [os.path.relpath(HERE / f"{unit}.c")
         for unit in "ptrace regs memory dump codec fds stub userns".split()]

ffibuilder.set_source(
    "crs.plugins.blcr._native",
    '#include "blcr.h"',
    sources=UNITS,
    include_dirs=[str(HERE), str(HERE.parents[2] / "native")],  # blcr.h; crc32c.h, lzpack.h ...
    extra_compile_args=["-msse4.2", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
