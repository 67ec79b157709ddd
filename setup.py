# The cffi extension modules cannot be declared in pyproject.toml alone; the mtcp kernel is a plain
# shared library (no Python in it: it is preloaded into any program), built by a build_ext step.
import glob
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# extension name -> file name of a plain library (no module init, no libpython)
PLAIN = {"crs.plugins.mtcp.libmtcp": "libmtcp.so", "snapc.crcp.libcrcp": "libcrcp.so"}


def units(folder: str, names: str) -> list[str]:
    """The C files of one native library or program: one unit per concern (its header, in the
    same folder, says which holds what)."""
    return [f"{folder}/{name}.c" for name in names.split()]


def mpich_include() -> str:
    """MPICH's headers: from the mpich wheel of the build environment (pyproject's build
    requirements), or PYCRS_MPI_INCLUDE. The layer is compiled against them and links no libmpi
    (it finds the one mpi4py loaded at run time)."""
    given = os.environ.get("PYCRS_MPI_INCLUDE")
    prefixes = [sys.prefix, sys.base_prefix]
    for path in sys.path:  # pip's isolated build environment: <prefix>/lib/pythonX.Y/site-packages
        if path.endswith("site-packages"):
            prefixes.append(os.path.dirname(os.path.dirname(os.path.dirname(path))))
    for d in ([given] if given else []) + [os.path.join(p, "include") for p in prefixes]:
        if os.path.isfile(os.path.join(d, "mpi_proto.h")):
            return d
    raise SystemExit("pycrs build: MPICH's mpi_proto.h not found (the 'mpich' wheel is a build "
                     "requirement; or set PYCRS_MPI_INCLUDE to MPICH's include directory)")


# The mtcp restart program: static, no libc, linked at the address it restores around (it must
# not overlap the image it rebuilds; crs/plugins/mtcp/restart.py checks the same range).
RESTART_PROGRAM = "pycrs-mtcp-restart"
RESTART_SOURCES = units("crs/plugins/mtcp/native/restart", "main libc pages threads state")
RESTART_FLAGS = ["-O2", "-static", "-nostdlib", "-fpie", "-no-pie", "-fno-stack-protector",
                 "-fno-asynchronous-unwind-tables", "-fno-tree-loop-distribute-patterns",
                 "-msse4.2", "-Wall", "-Wextra", "-Icrs/native",
                 "-Wl,-Ttext-segment=0x100000000000", "-Wl,-z,noexecstack", "-Wl,--build-id=none"]


class BuildExt(build_ext):
    def run(self) -> None:
        # the MPI layer's generated wrappers, from the headers of the MPICH it is built against
        include = mpich_include()
        generated = os.path.join(self.build_temp, "crcp")
        os.makedirs(generated, exist_ok=True)
        subprocess.run([sys.executable, "snapc/crcp/generate.py",
                        os.path.join(include, "mpi_proto.h"), CRCP_NATIVE,
                        os.path.join(generated, "crcp_wrappers.inc")], check=True)
        crcp.include_dirs[:] = [include, generated]
        super().run()
        # beside libmtcp.so, wherever this build puts it (the tree, or the wheel's build dir)
        where = os.path.dirname(self.get_ext_fullpath("crs.plugins.mtcp.libmtcp"))
        os.makedirs(where, exist_ok=True)
        cc = shlex.split(os.environ.get("CC", "cc"))
        subprocess.run([*cc, *RESTART_FLAGS, "-o", os.path.join(where, RESTART_PROGRAM),
                        *RESTART_SOURCES], check=True)

    def get_ext_filename(self, fullname: str) -> str:
        # called with the full dotted name, or with its last part alone (distutils' build path)
        for name, filename in PLAIN.items():
            if fullname == name:
                return os.path.join(*name.split(".")[:-1], filename)
            if fullname == name.rpartition(".")[2]:
                return filename
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext: Extension) -> list[str]:
        return [] if ext.name in PLAIN else super().get_export_symbols(ext)

    def get_libraries(self, ext: Extension) -> list[str]:
        return list(ext.libraries) if ext.name in PLAIN else super().get_libraries(ext)


mtcp = Extension(
    "crs.plugins.mtcp.libmtcp",
    sources=units("crs/plugins/mtcp/native/kernel",
                  "kernel control checkpoint threads process signals fds fd_kinds memory vmas "
                  "image pages compress writer resume buf procfs"),
    include_dirs=["crs/native"],  # crc32c.h, lzpack.h, fdio.h, pagemap.h, shared with blcr
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-fvisibility=hidden", "-pthread"],
    extra_link_args=["-pthread"],
)

# The MPI layer: every *.c of its directory (generate.py reads them all for the MPI functions
# they define), its headers as dependencies; the generated wrappers come from the build directory.
CRCP_NATIVE = "snapc/crcp/native"
crcp = Extension(
    "snapc.crcp.libcrcp",
    sources=sorted(glob.glob(os.path.join(CRCP_NATIVE, "*.c"))),
    depends=sorted(glob.glob(os.path.join(CRCP_NATIVE, "*.h"))),
    extra_compile_args=["-O2", "-Wall", "-fvisibility=hidden", "-pthread"],
    extra_link_args=["-pthread"],
    libraries=["dl"],
)

setup(cmdclass={"build_ext": BuildExt},
      ext_modules=[mtcp, crcp],
      cffi_modules=["crs/native/build_fsops.py:ffibuilder",
                    "crs/native/build_imagecheck.py:ffibuilder",
                    "crs/plugins/blcr/native/build_blcr.py:ffibuilder"])
