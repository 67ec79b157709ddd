"""Start-up hook for Python processes launched under pycrs (this directory is put first on
PYTHONPATH by pycrs launchers, and nowhere else, so other processes pay nothing).

It activates the pycrs runtime when checkpoint/restart is enabled, and the layers above it that
the process belongs to (``PYCRS_LAYERS``, crs/layers.py: a rank of a C/R job connects to its
coordinator), then runs whatever sitecustomize module this one shadows.
"""
import importlib
import os
import sys


def _is_restorer() -> bool:
    """Whether this interpreter runs opal-restart: a tool, never a process to checkpoint. Under
    a C/R mpirun (``ompi-restart`` of blcr images relaunches each rank as ``opal-restart
    SNAPSHOT``) it must neither serve requests nor register as a rank, and it keeps the
    launcher's PMI descriptor and environment for the rank it restores as its child."""
    argv = list(getattr(sys, "orig_argv", ()))
    if len(argv) >= 2 and os.path.basename(argv[1]) == "opal-restart":
        return True
    return any(a == "-m" and argv[i + 1:i + 2] == ["crs.cli.opal_restart"]
               for i, a in enumerate(argv))


def _activate() -> None:
    if _is_restorer():
        return
    layers: list = []
    try:
        from crs import layers as crs_layers, runtime

        layers = crs_layers.of_this_process()
        runtime.activate_if_enabled()
        if runtime.is_active():
            for layer in layers:
                layer.activate()
    except Exception as exc:  # noqa: BLE001
        variables = ["PYCRS_RESTART_SNAPSHOT"]  # crs.runtime.RESTART_ENV
        variables += [v for layer in layers for v in getattr(layer, "RESTART_VARIABLES", ())]
        restarting = next((os.environ[v] for v in variables if os.environ.get(v)), None)
        if restarting:
            # Going on would start the application from scratch, silently losing its state.
            print(f"pycrs: cannot restart process {os.getpid()} from {restarting}: {exc}",
                  file=sys.stderr)
            sys.stderr.flush()
            os._exit(1)
        # A fresh start: never keep the application from running, but say why C/R is off.
        print(f"pycrs: checkpoint/restart not enabled in process {os.getpid()}: {exc}",
              file=sys.stderr)


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    me = sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        if me is not None:
            sys.modules["sitecustomize"] = me
    finally:
        sys.path[:] = saved


_activate()
_chain()
