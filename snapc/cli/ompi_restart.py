"""``ompi-restart GLOBAL_SNAPSHOT``: verify a global snapshot, then relaunch the job from it
through our mpirun (same ranks, program, arguments and C/R parameters)."""
from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from crs import params
from crs.cli.errors import ToolParser, UsageError, run_tool

from .. import jobenv

if TYPE_CHECKING:
    from crs.hookspecs import Relaunch
    from crs.snapshot import LocalSnapshot

    from ..storage import GlobalSnapshot

# The framework and the snapshot code are imported where they are used, after the arguments are
# parsed: --help and a usage mistake are answered without loading them.

TOOL = "ompi-restart"


def build_parser() -> ToolParser:
    p = ToolParser(prog=TOOL, description="Verify a global snapshot and restart its MPI job "
                   "from it, every rank from its local snapshot.")
    params.add_arguments(p)
    p.add_argument("-s", "--seq", type=int, metavar="N",
                   help="the sequence to restart from (default: the newest finished one)")
    p.add_argument("--hostfile", "--machinefile", dest="hostfile", metavar="FILE",
                   help="hosts to run the restarted job on")
    p.add_argument("--mpirun_opts", "--mpirun-opts", dest="mpirun_opts", default="",
                   metavar="'OPTIONS'", help="extra options for mpirun, in one quoted string")
    p.add_argument("--showme", action="store_true",
                   help="print the command that would be run, run nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="report progress")
    p.add_argument("snapshot", metavar="GLOBAL_SNAPSHOT",
                   help="global snapshot directory (a path, or a name in "
                        "snapc_base_global_snapshot_dir)")
    return p


def find_global_snapshot(name: str, prm: params.Params) -> Path:
    given = Path(name).expanduser()
    if given.exists() or given.is_absolute():
        return given
    return prm.get_path("snapc_base_global_snapshot_dir") / name


def rank_relaunch(snap: LocalSnapshot) -> Relaunch:
    """The program a rank ran, as recorded in its local snapshot."""
    from crs.hookspecs import Relaunch
    from crs.snapshot import SnapshotError

    where = snap.path / "snapshot_meta.data"
    try:
        argv = json.loads(snap.meta.get("Command") or "null")
        mca = json.loads(snap.meta.get("MCA Params") or "{}")
    except ValueError:
        raise SnapshotError(f"{where}: malformed Command or MCA Params record") from None
    executable, cwd = snap.meta.get("Executable"), snap.meta.get("CWD")
    if not argv or not executable or not cwd:
        raise SnapshotError(f"{where}: no Command, Executable or CWD record to relaunch from")
    return Relaunch(executable=executable, argv=[executable, *argv[1:]], cwd=cwd, env=mca,
                    job=True)


def our_mpirun() -> list[str]:
    """Our front-end, by its console script when that is ours, else as a module."""
    script = Path(sys.executable).parent / "mpirun"
    try:
        if script.read_bytes()[:2] == b"#!" and b"snapc.frontend" in script.read_bytes():
            return [str(script)]
    except OSError:
        pass
    return [sys.executable, "-m", "snapc.frontend"]


_RANK_COUNT = {"-n", "-np", "--n", "--np", "-c"}
_HOSTS = {"-host", "--host", "-hosts", "-f", "-hostfile", "--hostfile", "-machinefile",
          "--machinefile"}


def original_launcher_options(gs: GlobalSnapshot, new_hosts: bool) -> list[str]:
    """The launcher options the job was started with, without its rank count (the snapshot
    fixes it) and, when the restart names its own hosts, without the old ones."""
    from crs.snapshot import SnapshotError

    try:
        options = json.loads(gs.job("Launcher Options") or "[]")
    except ValueError:
        raise SnapshotError(f"{gs.path}: malformed Launcher Options record") from None
    drop = _RANK_COUNT | (_HOSTS if new_hosts else set())
    kept, i = [], 0
    while i < len(options):
        if options[i] in drop:
            i += 2
            continue
        kept.append(options[i])
        i += 1
    return kept


def mpirun_options(text: str) -> list[str]:
    """The options of ``--mpirun_opts``, split as a shell would."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--mpirun_opts {text!r}: {str(exc).lower()}") from None


def check_hostfile(name: str | None) -> None:
    """A hostfile the launcher could not read would fail the restart in the launcher's words."""
    if name:
        try:
            with open(name, "rb"):
                pass
        except OSError as exc:
            raise UsageError(f"--hostfile {name}: {exc.strerror}") from None


def build_command(snaps: list[LocalSnapshot], mca: dict[str, str], launcher_options: list[str],
                  hostfile: str | None = None,
                  mpirun_opts: str = "") -> tuple[list[str], Relaunch]:
    """The mpirun command line (MPMD when ranks differ) and the relaunch of rank 0."""
    from crs.framework import ComponentError, component_for_snapshot

    launches = []
    for rank, snap in enumerate(snaps):
        relaunch = rank_relaunch(snap)
        try:
            component = component_for_snapshot(snap.component)
        except ComponentError as exc:
            raise ComponentError(f"{snap.path}: {exc}") from None  # which rank's snapshot
        component.call("crs_prelaunch", rank=rank, snapshot=snap, relaunch=relaunch)
        launches.append(relaunch)
    cmd = our_mpirun() + launcher_options
    if hostfile:
        cmd += ["--hostfile", str(Path(hostfile).absolute())]
    cmd += mpirun_options(mpirun_opts)
    for name, value in mca.items():
        cmd += ["--mca", name, value]
    if all(r.argv == launches[0].argv for r in launches):
        cmd += ["-np", str(len(launches)), *launches[0].argv]
    else:
        groups = [["-np", "1", *r.argv] for r in launches]
        cmd += [tok for i, g in enumerate(groups) for tok in ([":"] if i else []) + g]
    return cmd, launches[0]


@dataclass
class Restart:
    """How a job is relaunched from one verified sequence: our mpirun's command line, what the
    restart adds to the environment, and the directory it runs in (rank 0's)."""

    cmd: list[str]
    job_env: dict[str, str]
    cwd: str

    def execute(self, extra_env: dict[str, str] | None = None) -> NoReturn:
        """Become the restarted job's mpirun (this process's PID stays)."""
        os.chdir(self.cwd)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(self.cmd[0], self.cmd, {**os.environ, **self.job_env, **(extra_env or {})})


def plan_restart(gs: GlobalSnapshot, seq: int, snaps: list[LocalSnapshot],
                 mca: dict[str, str] | None = None, hostfile: str | None = None,
                 mpirun_opts: str = "") -> Restart:
    """The restart of ``gs`` from sequence ``seq``, whose local snapshots ``snaps`` verified:
    the same ranks, program, arguments and C/R parameters, and the job's launcher options."""
    from crs.plugins.image_based import TRANSPARENT_MARK

    cmd, first = build_command(snaps, mca or {}, original_launcher_options(gs, bool(hostfile)),
                               hostfile, mpirun_opts)
    job_env = {**first.env,  # the C/R parameters the job ran with
               "OMPI_MCA_ft_cr_enabled": "1",
               jobenv.ENV_RESTART_GLOBAL: str(gs.path), jobenv.ENV_RESTART_SEQ: str(seq)}
    if any(snap.meta.get(TRANSPARENT_MARK) == "1" for snap in snaps):
        job_env[jobenv.ENV_RESTART_IMAGES] = "1"  # restored images under the MPI layer
        job_env.update(namespaced_ranks(snaps))
    return Restart(cmd, job_env, first.cwd)


#: UCX's shared-memory transports, which find a peer by its PID (and cannot reach one in
#: another PID namespace); MPICH's own shared memory between the ranks works there
UCX_SHARED_MEMORY = "^posix,sysv,cma"


def namespaced_ranks(snaps: list[LocalSnapshot]) -> dict[str, str]:
    """When this user may not choose PIDs, every rank comes back in a user and PID namespace of
    its own: refused here in one line if the kernel forbids that; else what the new job's
    environment needs for ranks in separate PID namespaces to talk (the ranks take UCX_*
    settings from their new launcher)."""
    from crs.plugins.blcr.restore import RestoreError, may_choose_pids, no_restore_without_privilege

    if may_choose_pids():
        return {}
    pid = int(snaps[0].meta.get("PID") or 0)
    why = no_restore_without_privilege(pid)
    if why:
        raise RestoreError(why)
    return {} if "UCX_TLS" in os.environ else {"UCX_TLS": UCX_SHARED_MEMORY}


def _glue_mpirun_opts(argv: list[str]) -> list[str]:
    """``--mpirun_opts "--x"``: argparse would take the quoted options for options of ours."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in ("--mpirun_opts", "--mpirun-opts") and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _run(argv: list[str] | None) -> int:
    ns = build_parser().parse_args(_glue_mpirun_opts(sys.argv[1:] if argv is None else argv))
    from ..storage import GlobalSnapshot

    prm = params.from_arguments(ns)
    prm.validate()
    mpirun_options(ns.mpirun_opts)  # usage mistakes are reported before the snapshot is read
    check_hostfile(ns.hostfile)
    gs = GlobalSnapshot(find_global_snapshot(ns.snapshot, prm))
    seq = gs.newest() if ns.seq is None else ns.seq
    if ns.verbose:
        print(f"{TOOL}: verifying sequence {seq} of {gs.path}", file=sys.stderr)
    from crs.progress import Bar, Meter, summary

    meter = Meter()
    with Bar(f"verifying sequence {seq}", meter) as bar:
        snaps = gs.verify(seq, meter=meter)
    restart = plan_restart(gs, seq, snaps, prm.cli, ns.hostfile, ns.mpirun_opts)
    if ns.showme:  # everything the restart sets, so that the printed command does the same
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in restart.job_env.items())
        print(f"cd {shlex.quote(restart.cwd)} && {assignments} {shlex.join(restart.cmd)}")
        return 0
    # on stderr: stdout is the restarted job's from here on
    print(f"{TOOL}: verified sequence {seq} of {gs.path} ({summary(meter(), bar.elapsed)}); "
          f"restarting {len(snaps)} ranks", file=sys.stderr)
    if ns.verbose:
        print(f"{TOOL}: restarting {len(snaps)} ranks: {shlex.join(restart.cmd)}",
              file=sys.stderr)
    restart.execute()


def main(argv: list[str] | None = None) -> None:
    run_tool(TOOL, lambda: _run(argv))
