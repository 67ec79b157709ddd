"""The environment of a process started under pycrs: C/R parameters plus the start-up hook."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

BOOT_DIR = Path(__file__).with_name("boot")


def cr_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus ``extra`` (OMPI_MCA_* settings) with C/R enabled and the start-up hook on
    PYTHONPATH, so that any Python process started with it runs the pycrs runtime."""
    env = dict(base)
    # Aggregate sets arrive expanded in ``extra``; by name, Open MPI's processes would look
    # for them too (and fail).
    env.pop("OMPI_MCA_mca_base_param_file_prefix", None)
    env["OMPI_MCA_ft_cr_enabled"] = "1"
    env.update(extra)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(BOOT_DIR)]
    env["PYTHONPATH"] = os.pathsep.join([str(BOOT_DIR), *paths])
    return env
