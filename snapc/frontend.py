"""Our ``mpirun``: a front-end over the installed MPI launcher.

Without checkpoint/restart it execs the real launcher with exactly the arguments it was given.
With ``-am ft-enable-cr`` (or ``--mca ft_cr_enabled 1``, or the same in the environment) it
becomes the job's global coordinator (``snapc.coordinator``): it starts the real launcher as its
child with the ranks' C/R environment, forwards signals, and ends as the launcher ended: with
its exit status, or killed by the same signal.

When the job's ``crs`` parameter selects an image-based component (``--mca crs blcr`` or
``--mca crs mtcp``), the ranks are checkpointed transparently: the MPI layer (``snapc.crcp``)
is preloaded into every rank (MPICH only: Open MPI 5 cannot finalize and re-initialize MPI
sessions more than once; docs/design/transparent-mpi.md), with mtcp its kernel too, and each
rank is saved whole as a process image.
"""
from __future__ import annotations

import difflib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from crs import layers, params as crs_params
from crs.cli.errors import UsageError, run_tool
from crs.launch import cr_environment

from . import autorestart, crcp, jobenv, on_signal
from .launcher import RealLauncher, find_real_launcher
from .layer import NAME
from .period import Period

TOOL = "mpirun"
IMAGE_COMPONENTS = frozenset(crcp.COMPONENTS)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGTSTP, signal.SIGCONT)
SI_KERNEL = 0x80  # si_code of a signal the terminal sent to the whole foreground group
HELP = ("-h", "--help", "-help")  # hydra's and prterun's
#: parameter names of ours; under Open MPI, other --mca names are its own
OUR_PREFIXES = ("crs", "snapc", "ft_cr", "mpirun_", "pycrs")

# Launcher options (MPICH's hydra and Open MPI's prterun) that take a value, so that the value
# is not mistaken for the program.
_VALUED = {
    "-n", "-np", "--n", "--np", "-c", "-host", "--host", "-hosts", "-f", "-hostfile",
    "--hostfile", "-machinefile", "--machinefile", "-wdir", "--wdir", "-x", "--map-by",
    "--bind-to", "--rank-by", "-ppn", "--npernode", "-npernode", "-launcher", "-bootstrap",
    "-iface", "-genvlist", "-envlist", "-configfile", "--prefix", "--preload-files", "-s",
    "--stdin", "-outfile-pattern", "-errfile-pattern", "--output", "-output", "--tune",
    "--personality", "--display", "--runtime-options", "-genvexcept", "-pmi-port",
}
_VALUED2 = {"-genv", "-env", "-gmca", "--gmca"}


@dataclass
class CommandLine:
    """Our mpirun's arguments, with pycrs's options taken apart from the launcher's."""

    mca: list[tuple[str, str]] = field(default_factory=list)
    amca: list[str] = field(default_factory=list)
    launcher_options: list[str] = field(default_factory=list)
    program: list[str] = field(default_factory=list)


def _is_program(token: str) -> bool:
    if token.startswith("-"):
        return False
    return shutil.which(token) is not None or (os.path.isfile(token) and os.access(token, os.X_OK))


def split_command_line(argv: list[str]) -> CommandLine:
    """Take ``-am SET`` and ``--mca NAME VALUE`` out of the launcher options; the program and
    its arguments (from the first token that names an executable) are left as they are."""
    out = CommandLine()
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("-am", "--am"):
            if i + 1 >= len(argv):
                raise UsageError(f"{tok} needs the name of an aggregate parameter set")
            out.amca.append(argv[i + 1])
            i += 2
        elif tok in ("-mca", "--mca", "-gmca", "--gmca"):
            if i + 2 >= len(argv):
                raise UsageError(f"{tok} needs a NAME and a VALUE")
            out.mca.append((argv[i + 1], argv[i + 2]))
            i += 3
        elif tok in _VALUED or tok in _VALUED2:
            width = 3 if tok in _VALUED2 else 2
            out.launcher_options += argv[i:i + width]
            i += width
        elif tok == "--" or _is_program(tok):
            out.program = argv[i + 1:] if tok == "--" else argv[i:]
            break
        else:
            out.launcher_options.append(tok)
            i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    run_tool(TOOL, lambda: _main(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    import snapc  # noqa: F401 - registers SnapC's parameters

    cmd = split_command_line(argv)
    prm = crs_params.Params(cli=cmd.mca, amca=cmd.amca)
    prm.validate()
    launcher = find_real_launcher(prm.get("mpirun_launcher") or None)
    if prm.get_bool("ft_cr_enabled"):
        refuse_unknown_parameters(cmd, launcher)
        Period(prm)  # a wrong snapc_base_period is refused before anything starts
        on_signal.from_params(prm)  # and so is a wrong snapc_base_checkpoint_signal
        autorestart.from_params(prm)  # or snapc_base_restarts / snapc_base_resume
    if not cmd.program and any(t in HELP for t in cmd.launcher_options):
        # what we are, in one line, before the launcher's own help
        print(f"{TOOL} (pycrs): run an MPI job with {launcher.path}; with -am ft-enable-cr it "
              "can be checkpointed (ompi-checkpoint) and restarted (ompi-restart). The "
              "launcher's help follows.")
    if not prm.get_bool("ft_cr_enabled"):
        sys.stdout.flush()
        os.execv(launcher.path, [launcher.path, *argv])
    if not cmd.program:
        raise UsageError("no program to run (usage: mpirun -am ft-enable-cr -n N PROGRAM ...)")
    return run_job(launcher, prm, cmd, argv)


def _launcher_arguments(launcher: RealLauncher, prm: crs_params.Params, cmd: CommandLine,
                        env: dict[str, str], rank_env: dict[str, str] | None = None) -> list[str]:
    args = [launcher.path, *launcher.base_args()]
    registered = {spec.name for spec in crs_params.registered()}
    for name, value in cmd.mca:  # Open MPI's own parameters go to its launcher
        if name not in registered and launcher.flavour == "openmpi":
            args += ["--mca", name, value]
    args += launcher.forward_env_args(env)
    for name, value in (rank_env or {}).items():  # the ranks' alone, not the launcher's
        args += ["-genv", name, value]
    return args + cmd.launcher_options + cmd.program


def transparent_checkpoint(prm: crs_params.Params, launcher: RealLauncher) -> str | None:
    """The image-based component the job's ranks can be saved with (``blcr`` or ``mtcp``), for
    which the MPI layer is preloaded into every rank; None when the ranks can only be saved at
    safe points (``crs`` names no image component, or Open MPI without an explicit request).

    With ``crs`` empty (``-am ft-enable-cr`` alone) the layer is preloaded on MPICH for blcr
    where this user may trace its own processes, else for mtcp: ranks whose program registers
    no checkpoint callback are then saved whole, any other at its safe points (``snapc.method``
    decides at each checkpoint). Where several are named, mtcp (priority 15) wins over blcr
    (10), as in any selection. Raises UsageError, in one line, where that cannot work."""
    from crs.framework import component_names, parse_selection

    include, exclude = parse_selection(prm.get("crs"))
    installed = component_names()
    unknown = sorted(((include or set()) | exclude) - set(installed))
    if unknown:
        raise UsageError(f"--mca crs {prm.get('crs')}: unknown CRS component "
                         f"{', '.join(unknown)} (installed: {', '.join(installed)})")
    explicit = include is not None
    images = (include if explicit else IMAGE_COMPONENTS) & (IMAGE_COMPONENTS - exclude)
    if not images:
        return None
    if launcher.flavour == "openmpi":
        if not explicit:
            return None  # safe points only: a checkpoint says so at once if there are none
        raise UsageError(
            f"--mca crs {prm.get('crs')}: transparent checkpoint of MPI ranks needs MPICH; "
            f"{launcher.version() or 'Open MPI'} cannot finalize and re-initialize MPI sessions "
            "more than once, so its ranks cannot be saved as images (docs/design/"
            "transparent-mpi.md); use the self component (--mca crs self)")
    if "mtcp" in images and (explicit or "blcr" not in images or not may_trace_own_processes()):
        component = "mtcp"
    else:
        component = "blcr"
    for library in jobenv.layer_libraries(component):
        if not library.is_file():
            what = "the MPI layer" if library == crcp.library_path() else "the mtcp kernel"
            raise UsageError(f"{what} {library} is not built (reinstall pycrs: pip install -e "
                             f".); it is needed for --mca crs {component}")
    if component == "mtcp":
        from crs.framework import CRSError
        from crs.plugins.mtcp import restart_program_path
        from crs.plugins.mtcp.component import MtcpComponent

        if not restart_program_path().is_file():
            raise UsageError(f"{restart_program_path()} is not built (reinstall pycrs: pip "
                             "install -e .); it is needed for --mca crs mtcp")
        try:  # the ranks' images are taken with these parameters: refuse bad ones now
            MtcpComponent().crs_init(prm)
        except CRSError as exc:
            raise UsageError(str(exc)) from None
    return component


def may_trace_own_processes() -> bool:
    """Whether a rank's child may trace the rank (blcr saves it so): Yama's ptrace_scope 0 or 1
    (the rank names its tracer), 2 with CAP_SYS_PTRACE (taken as root), never at 3."""
    try:
        scope = int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        return True  # no Yama: the usual same-user rules
    return scope <= 1 or (scope == 2 and os.geteuid() == 0)


def refuse_unknown_parameters(cmd: CommandLine, launcher: RealLauncher) -> None:
    """A misspelled parameter is refused at launch instead of being ignored. Names of ours are
    known; under Open MPI, other names are its launcher's own and pass through, unless they
    look like ours."""
    from crs.framework import manager

    manager()  # loading the components registers their parameters
    known = {spec.name for spec in crs_params.registered()}
    for name, _ in cmd.mca:
        if name in known:
            continue
        if launcher.flavour == "openmpi" and not name.startswith(OUR_PREFIXES):
            continue
        near = difflib.get_close_matches(name, known, n=1)
        raise UsageError(f"--mca {name}: unknown parameter" + (f" (did you mean {near[0]}?)"
                         if near else "") + "; 'pycrs info' lists them")


def run_job(launcher: RealLauncher, prm: crs_params.Params, cmd: CommandLine,
            argv: list[str]) -> int:
    """Be the global coordinator of a C/R job; return the job's exit status."""
    from .coordinator import GlobalCoordinator

    restart_dir = os.environ.pop(jobenv.ENV_RESTART_GLOBAL, None)
    restart_seq = os.environ.pop(jobenv.ENV_RESTART_SEQ, None)
    restoring = bool(os.environ.pop(jobenv.ENV_RESTART_IMAGES, None))
    restarts_done = autorestart.attempt()
    until_done = autorestart.from_params(prm)
    transparent = transparent_checkpoint(prm, launcher)
    # a job started (not restarted) with snapc_base_resume: resumed here (this process becomes
    # the restarted job's mpirun), or started afresh with its snapshots in that directory
    snapshot_dir = Path(restart_dir) if restart_dir else \
        autorestart.resume_or_start(until_done, cmd.program)
    records = [
        ("Job ID", str(os.getpid())),
        ("Mpirun Command", json.dumps([TOOL, *argv])),
        ("Launcher", f"{launcher.flavour} {launcher.path}"),
        ("Launcher Options", json.dumps(cmd.launcher_options)),
        ("AMCA", ":".join(cmd.amca)),
    ]
    coordinator = GlobalCoordinator(prm, records, snapshot_dir)
    if restart_seq is not None and restart_seq.isdigit():
        coordinator.restarted_from = int(restart_seq)
    env = cr_environment(os.environ, prm.child_env())
    env.update(layers.environment(env, NAME))  # the ranks run SnapC's layer (snapc/layer.py)
    env.update(coordinator.rank_environment())
    env.update(launcher.env())
    if restart_dir and restart_seq is not None and not restoring:
        env[jobenv.ENV_RESTART_SEQ_DIR] = str(Path(restart_dir) / restart_seq)
    # Restored ranks hold the layer already (opal-restart, which the launcher starts, needs none)
    rank_env = jobenv.layer_environment(env, transparent) if transparent and not restoring else {}
    args = _launcher_arguments(launcher, prm, cmd, env, rank_env)

    wanted = on_signal.from_params(prm)
    signals = set(FORWARDED) | ({wanted.sig} if wanted else set())
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # taken by the forwarding thread only
    coordinator.start()
    child = subprocess.Popen(args, env=env,
                             preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, signals))
    threading.Thread(target=_forward_signals, args=(child, coordinator, signals, wanted),
                     name="pycrs-signals", daemon=True).start()
    threading.Thread(target=_end_on_restore_failure, args=(child, coordinator),
                     name="pycrs-restore-watch", daemon=True).start()
    try:
        status = child.wait()
    finally:
        coordinator.close()
    if coordinator.restore_failure is not None:
        status = 1
    if status != 0:
        coordinator.connections_ended()  # which ranks died, and which first
    why = autorestart.why_failed(status, coordinator)
    if why is not None:  # returns only when the job is not restarted
        autorestart.restart_after_failure(why, coordinator, until_done, restarts_done)
    if wanted and coordinator.requeue:
        return wanted.requeue_status
    if status < 0:
        _die_of(-status)
    return 128 - status if status < 0 else status


def _end_on_restore_failure(child: subprocess.Popen[bytes], coordinator: object,
                            grace: float = 5.0) -> None:
    """A rank of a restarted job could not be restored: the others would wait for it in MPI
    forever. Say so in one line and end the job (the launcher ends its ranks on SIGTERM; it is
    killed if it has not within ``grace`` seconds)."""
    failed: threading.Event = coordinator.restore_failed  # type: ignore[attr-defined]
    while not failed.wait(0.5):
        if child.poll() is not None:
            return
    rank, why = coordinator.restore_failure  # type: ignore[attr-defined]
    print(f"{TOOL}: rank {rank} could not be restored ({why}); ending the restarted job",
          file=sys.stderr, flush=True)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            child.send_signal(sig)
            child.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def _die_of(sig: int) -> None:
    """End this process by the signal that ended the launcher (hydra dies of SIGHUP, say), so
    that our parent (a shell, a batch system, ``subprocess``) sees the wait status the plain
    launcher gives it, not an exit with 128 + N. No core file of ours: the launcher's was the
    crash. Returns only if the signal did not end the process."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    except (ValueError, OSError):
        pass
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(sig, signal.SIG_DFL)
    # To this thread, with the signal unblocked here: a process-wide one could be taken by the
    # forwarding thread's sigwaitinfo instead.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    signal.pthread_kill(threading.get_ident(), sig)


def _forward_signals(child: subprocess.Popen[bytes], coordinator: object,
                     signals: set[signal.Signals],
                     wanted: on_signal.SignalCheckpoint | None = None) -> None:
    """Pass signals on to the launcher (and stop/continue with the job on SIGTSTP/SIGCONT);
    ``wanted``'s signal checkpoints the job instead (snapc.on_signal).

    A signal the terminal sent to the whole foreground group has reached the launcher already;
    passing it on again would deliver it twice."""
    while child.poll() is None:
        info = signal.sigwaitinfo(signals)
        sig = signal.Signals(info.si_signo)
        if wanted and sig == wanted.sig:
            on_signal.checkpoint_now(coordinator, wanted)
            continue
        from_terminal = info.si_code == SI_KERNEL
        if sig not in (signal.SIGTSTP, signal.SIGCONT):
            coordinator.passed_on = sig  # type: ignore[attr-defined] # ended on purpose
        sends = [] if from_terminal else [(child.pid, sig)]
        if sig in (signal.SIGTSTP, signal.SIGCONT):
            # hydra passes neither on, and its ranks sit in sessions of their own, where the
            # kernel drops a SIGTSTP: stop (and continue) the local ranks ourselves.
            rank_sig = signal.SIGSTOP if sig == signal.SIGTSTP else sig
            sends += [(pid, rank_sig) for pid in coordinator.local_rank_pids()]  # type: ignore[attr-defined]
        for pid, s in sends:
            try:
                os.kill(pid, s)
            except ProcessLookupError:
                pass
        if sig == signal.SIGTSTP:
            os.kill(os.getpid(), signal.SIGSTOP)  # stop with the job, as a shell expects


if __name__ == "__main__":
    main()
