"""The pycrs demo (`make demo`): checkpoint a running job, kill it, restart it, compare.

It drives the same commands a user types, and shows them as it goes.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent


def show(cmd: list[str]) -> None:
    print("$", shlex.join(str(c).replace(str(BIN) + "/", "") for c in cmd), flush=True)


def single_process(work: Path) -> bool:
    print("\n== One process: pycrs run / opal-checkpoint / opal-restart ==")
    app = [str(HERE / "numpy_loop.py"), "300", "0.02"]
    ref = subprocess.run([sys.executable, app[0], "300", "0"], capture_output=True, text=True,
                         check=True).stdout.splitlines()[-1]
    cmd = [str(BIN / "pycrs"), "run", sys.executable, *app]
    show(cmd)
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, text=True)
    sock = Path(os.environ["PYCRS_CONTROL_DIR"]) / f"crs-{proc.pid}.sock"
    while not sock.exists():
        time.sleep(0.05)
    for _ in range(2):
        time.sleep(1.5)
        cmd = [str(BIN / "opal-checkpoint"), "-w", str(work), str(proc.pid)]
        show(cmd)
        print(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout, end="")
    print(f"$ kill -KILL {proc.pid}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cmd = [str(BIN / "opal-restart"), str(work / f"opal_snapshot_{proc.pid}.ckpt")]
    show(cmd)
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True).stdout
    print(out, end="")
    got = out.splitlines()[-1] if out else ""
    print(f"uninterrupted run: {ref}")
    ok = got == ref
    print("same result as an uninterrupted run" if ok else "MISMATCH")
    return ok


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pycrs-demo-") as tmp:
        work = Path(tmp)
        ctl = work / "ctl"
        ctl.mkdir(mode=0o700)
        os.environ["PYCRS_CONTROL_DIR"] = str(ctl)
        results = [single_process(work)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
