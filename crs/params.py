"""MCA-style parameters: the one place where every pycrs setting is resolved.

Precedence, highest first (as in Open MPI):

1. ``--mca NAME VALUE`` on the command line of a pycrs tool;
2. ``OMPI_MCA_NAME`` in the environment;
3. aggregate parameter sets named with ``-am SET[:SET...]`` (or
   ``OMPI_MCA_mca_base_param_file_prefix``), the first set listed winning over later ones;
4. the per-user file (``~/.pycrs/mca-params.conf``, or the ``mca_base_param_files`` parameter);
5. the built-in default.

Tools that start processes pass their command-line values on as ``OMPI_MCA_*`` variables, so a
process resolves the same values its launcher did.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # argparse is not imported at run time: every process loads this module
    import argparse

ENV_PREFIX = "OMPI_MCA_"
AMCA_PARAM = "mca_base_param_file_prefix"
AMCA_DIR = Path(__file__).with_name("amca")


class ParamError(ValueError):
    """A parameter has a value that cannot be used; the message names it and where it came from."""


@dataclass(frozen=True)
class ParamSpec:
    """A registered parameter: its name, default (as text), meaning and value type."""

    name: str
    default: str
    help: str
    kind: str = "string"  # string | int | bool | path | paths (colon separated)


@dataclass(frozen=True)
class ParamValue:
    """A resolved value and where it came from (for ``pycrs info`` and error messages)."""

    name: str
    value: str
    source: str


_REGISTRY: dict[str, ParamSpec] = {}


def register(name: str, default: str, help: str, kind: str = "string") -> ParamSpec:
    """Declare a parameter (idempotent, so modules may be imported more than once)."""
    spec = ParamSpec(name, default, help, kind)
    _REGISTRY.setdefault(name, spec)
    return _REGISTRY[name]


def registered() -> list[ParamSpec]:
    """Every registered parameter, sorted by name."""
    return sorted(_REGISTRY.values(), key=lambda s: s.name)


register("ft_cr_enabled", "0", "Enable checkpoint/restart in processes started by pycrs tools",
         "bool")
register("crs", "", "CRS components to consider: a comma list to include, or ^a,b to exclude; "
         "empty selects by priority")
#: where snapshots go unless told: the cluster's scratch space when the batch system names one
#: ($SCRATCH), else the working directory (of the job's mpirun, of the tool, of the process)
SNAPSHOT_DIR_DEFAULT = "${SCRATCH:-.}"
register("crs_base_snapshot_dir", SNAPSHOT_DIR_DEFAULT, "Directory where opal-checkpoint and "
         "crs.checkpoint() write local snapshots (opal_snapshot_<PID>.ckpt); $SCRATCH if set, "
         "else the working directory", "path")
register("crs_base_fsync", "1", "fsync snapshot files and directories before a snapshot is "
         "committed (turn off only for throw-away benchmarks)", "bool")
register("crs_base_startup_timeout", "10", "Seconds a checkpoint request for a process that pycrs "
         "is still starting waits for it to serve its control endpoint; a program younger than "
         "this may still be registering its checkpoint callback, which is awaited until then",
         "int")
register("crs_base_safe_point_timeout", "600", "Seconds a checkpoint request waits for the process "
         "(or every rank of a job) to reach a safe point before it fails and the program goes on "
         "(0: no limit)", "int")
register(AMCA_PARAM, "", "Aggregate parameter sets to load (what -am sets), colon separated")
register("mca_base_param_file_path", f"{AMCA_DIR}:.", "Directories searched for aggregate "
         "parameter sets, colon separated", "paths")
register("mca_base_param_files", "~/.pycrs/mca-params.conf", "Per-user parameter files, colon "
         "separated", "paths")

_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::-(?P<fallback>[^}]*))?\}|\$(?P<bare>\w+)")
_TRUE = {"1", "true", "yes", "on", "enabled"}
_FALSE = {"0", "false", "no", "off", "disabled", ""}


def parse_param_file(path: Path) -> dict[str, str]:
    """Read ``name = value`` lines; ``#`` starts a comment. Raises ParamError on a bad line."""
    values: dict[str, str] = {}
    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError as exc:
        raise ParamError(f"{path}: not a parameter file (not UTF-8 text at byte {exc.start})"
                         ) from None
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ParamError(f"{path}:{lineno}: expected 'name = value', found {raw.strip()!r}")
        values[name.strip()] = value.strip()
    return values


class Params:
    """Resolved parameters for one tool or process. Cheap to build; resolution is lazy."""

    def __init__(
        self,
        cli: Iterable[tuple[str, str]] = (),
        amca: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cli: dict[str, str] = dict(cli)
        sets = [s for s in amca if s]
        if sets:
            self.cli[AMCA_PARAM] = ":".join(sets)
        self.env = os.environ if env is None else env
        self._layers: list[tuple[str, dict[str, str]]] | None = None

    # -- layers -----------------------------------------------------------------------------
    def _from_env(self) -> dict[str, str]:
        n = len(ENV_PREFIX)
        return {k[n:]: v for k, v in self.env.items() if k.startswith(ENV_PREFIX)}

    def _amca_sets(self, env_values: Mapping[str, str]) -> list[str]:
        text = self.cli.get(AMCA_PARAM) or env_values.get(AMCA_PARAM, "")
        return [s for s in text.split(":") if s]

    def _find_amca(self, name: str, search: str) -> Path:
        """The file of aggregate set ``name``."""
        candidate = Path(os.path.expanduser(name))
        if candidate.is_file():
            return candidate
        for d in search.split(":"):
            p = Path(os.path.expanduser(d or ".")) / name
            if p.is_file():
                return p
        raise ParamError(f"aggregate parameter set {name!r} not found (searched {search})")

    def layers(self) -> list[tuple[str, dict[str, str]]]:
        """The sources in precedence order, each as (description, values)."""
        if self._layers is not None:
            return self._layers
        env_values = self._from_env()
        layers: list[tuple[str, dict[str, str]]] = [
            ("command line", self.cli),
            ("environment", env_values),
        ]
        search = self.cli.get("mca_base_param_file_path") or env_values.get(
            "mca_base_param_file_path", _REGISTRY["mca_base_param_file_path"].default
        )
        for name in self._amca_sets(env_values):
            path = self._find_amca(name, search)
            layers.append((f"aggregate set {name} ({path})", parse_param_file(path)))
        files = self.cli.get("mca_base_param_files") or env_values.get(
            "mca_base_param_files", _REGISTRY["mca_base_param_files"].default
        )
        for f in files.split(":"):
            path = Path(os.path.expanduser(f)) if f else None
            if path is not None and path.is_file():
                layers.append((f"file {path}", parse_param_file(path)))
        self._layers = layers
        return layers

    # -- lookup -----------------------------------------------------------------------------
    def lookup(self, name: str) -> ParamValue:
        """The value of ``name`` with its source; unregistered names without a value raise
        KeyError."""
        for source, values in self.layers():
            if name in values:
                if source == "environment":
                    source = f"environment {ENV_PREFIX}{name}"
                return ParamValue(name, values[name], source)
        if name in _REGISTRY:
            return ParamValue(name, _REGISTRY[name].default, "default")
        raise KeyError(name)

    def get(self, name: str) -> str:
        """The value as text."""
        return self.lookup(name).value

    def _typed(self, name: str, kind: str, convert: Callable[[str], object]) -> object:
        pv = self.lookup(name)
        try:
            return convert(pv.value.strip())
        except ValueError:
            raise ParamError(
                f"parameter {name}: {pv.value!r} is not a valid {kind} (from {pv.source})"
            ) from None

    def get_bool(self, name: str) -> bool:
        """The value as a boolean (1/0, true/false, yes/no, on/off)."""

        def convert(v: str) -> bool:
            if v.lower() in _TRUE:
                return True
            if v.lower() in _FALSE:
                return False
            raise ValueError(v)

        return bool(self._typed(name, "boolean", convert))

    def get_int(self, name: str) -> int:
        """The value as an integer."""
        return int(self._typed(name, "integer", int))  # type: ignore[arg-type]

    def get_path(self, name: str) -> Path:
        """The value as a path, with ``~``, ``$VAR``, ``${VAR}`` and ``${VAR:-fallback}`` (the
        fallback when VAR is unset or empty) expanded; an unset variable without a fallback is
        a ParamError."""
        pv = self.lookup(name)

        def variable(m: re.Match[str]) -> str:
            var = m["braced"] or m["bare"]
            value = self.env.get(var, "")
            if m["fallback"] is not None and not value:
                return m["fallback"]
            if var not in self.env:
                raise ParamError(f"parameter {name}: {pv.value!r} names ${var}, which is not set "
                                 f"(from {pv.source})")
            return value

        return Path(os.path.expanduser(_VARIABLE.sub(variable, pv.value)))

    def all_values(self) -> list[ParamValue]:
        """Every registered parameter and every parameter given anywhere, sorted by name."""
        names = set(_REGISTRY)
        for _source, values in self.layers():
            names.update(values)
        return [self.lookup(n) for n in sorted(names)]

    def validate(self) -> None:
        """Resolve every source and check every typed parameter; raise ParamError on the first
        problem (tools call this before they act, so a bad value is reported, not ignored)."""
        self.layers()
        for spec in registered():
            if spec.kind == "bool":
                self.get_bool(spec.name)
            elif spec.kind == "int":
                self.get_int(spec.name)
            elif spec.kind == "path":
                self.get_path(spec.name)

    def child_env(self) -> dict[str, str]:
        """Environment entries that make a child process resolve what this process resolved.

        Command-line values become ``OMPI_MCA_*`` variables (paths made absolute, as the child
        may run elsewhere). Aggregate sets are passed on expanded, value by value, and never by
        name: Open MPI's own processes read ``OMPI_MCA_mca_base_param_file_prefix`` too and fail
        on a set they cannot find. Values the environment already sets are left to it."""
        env: dict[str, str] = {}
        inherited = self._from_env()
        for source, values in reversed(self.layers()):
            if source.startswith("aggregate set"):
                env.update({ENV_PREFIX + k: v for k, v in values.items() if k not in inherited})
        for k, v in self.cli.items():
            if k == AMCA_PARAM:
                continue
            kind = _REGISTRY[k].kind if k in _REGISTRY else "string"
            if kind == "path":
                v = _absolute(v)
            elif kind == "paths":
                v = ":".join(_absolute(p) if p else p for p in v.split(":"))
            env[ENV_PREFIX + k] = v
        return env


def _absolute(path: str) -> str:
    """``path`` made independent of the working directory (``~`` and a leading variable are
    left for the child)."""
    if not path or path.startswith(("~", "$")) or os.path.isabs(path):
        return path
    return os.path.abspath(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add Open MPI style ``--mca NAME VALUE`` and ``-am SET`` options to an argparse parser."""
    parser.add_argument(
        "--mca", "-mca", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="set an MCA parameter (repeatable)",
    )
    parser.add_argument(
        "-am", "--am", action="append", default=[], metavar="SET",
        help="load an aggregate parameter set, e.g. ft-enable-cr (repeatable)",
    )


def from_arguments(ns: object) -> Params:
    """Params from a namespace built by a parser that had add_arguments()."""
    return Params(cli=[tuple(p) for p in getattr(ns, "mca", [])],  # type: ignore[misc]
                  amca=getattr(ns, "am", []))
