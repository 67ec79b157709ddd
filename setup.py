# The cffi extension modules cannot be declared in pyproject.toml alone; the mtcp kernel is a plain
# shared library (no Python in it: it is preloaded into any program), built by a build_ext step.
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# extension name -> file name of a plain library (no module init, no libpython)
PLAIN = {"crs.plugins.mtcp.libmtcp": "libmtcp.so"}


class BuildExt(build_ext):
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
    sources=["crs/plugins/mtcp/native/mtcp.c"],
    include_dirs=["crs/native"],  # crc32c.h, shared with blcr
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-fvisibility=hidden", "-pthread"],
    extra_link_args=["-pthread"],
)

setup(cmdclass={"build_ext": BuildExt},
      ext_modules=[mtcp],
      cffi_modules=["crs/native/build_fsops.py:ffibuilder",
                    "crs/plugins/blcr/native/build_blcr.py:ffibuilder"])
