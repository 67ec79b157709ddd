# The cffi extension modules cannot be declared in pyproject.toml alone.
from setuptools import setup

setup(cffi_modules=["crs/native/build_fsops.py:ffibuilder",
                    "crs/plugins/blcr/native/build_blcr.py:ffibuilder"])
