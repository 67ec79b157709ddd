"""The pycrs demo (`make demo`): checkpoint running jobs (one process under pycrs, one plain
process saved from outside with blcr, one that saves itself with the mtcp kernel, then a 4-rank
MPI job), kill them, restart them, and compare with uninterrupted runs.

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
    return checkpoint_kill_restart(proc, work, [], ref)


def compare(out: str, ref: str) -> bool:
    """Show the restarted run's output and whether it ends as the uninterrupted run did."""
    print(out, end="")
    got = out.splitlines()[-1] if out else ""
    print(f"uninterrupted run: {ref}")
    ok = got == ref
    print("same result as an uninterrupted run" if ok else "MISMATCH")
    return ok


def from_outside(work: Path) -> bool:
    return image_based(work, "Any process, saved from outside: opal-checkpoint --mca crs blcr",
                       [], ["--mca", "crs", "blcr"])


def self_saving(work: Path) -> bool:
    return image_based(work, "A process that saves itself: pycrs run --mca crs mtcp (forked, "
                       "compressed)", [str(BIN / "pycrs"), "run", "--mca", "crs", "mtcp"],
                       ["--mca", "crs", "mtcp", "--mca", "crs_mtcp_forked", "1", "--mca",
                        "crs_mtcp_compress", "fast"], kernel_socket="mtcp")


def image_based(work: Path, title: str, launcher: list[str], options: list[str],
                kernel_socket: str | None = None) -> bool:
    """numpy_loop.py started by ``launcher``, saved by an image-based component (opal-checkpoint
    OPTIONS), killed, brought back with its PID (root only)."""
    print(f"\n== {title} ==")
    if os.geteuid() != 0:
        print("skipped: bringing a process back with its own PID needs root")
        return True
    app = [sys.executable, str(HERE / "numpy_loop.py"), "300"]
    ref = subprocess.run([*app, "0"], capture_output=True, text=True,
                         check=True).stdout.splitlines()[-1]
    cmd = [*launcher, *app, "0.02"]
    show(cmd)
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    if kernel_socket:  # its checkpoint kernel serves requests once this exists
        sock = Path(os.environ["PYCRS_CONTROL_DIR"]) / f"{kernel_socket}-{proc.pid}.sock"
        while not sock.exists():
            time.sleep(0.05)
    return checkpoint_kill_restart(proc, work, options, ref)


def checkpoint_kill_restart(proc: subprocess.Popen[str], work: Path, options: list[str],
                            ref: str) -> bool:
    """Checkpoint one process twice (opal-checkpoint OPTIONS), SIGKILL it, opal-restart it and
    compare its end with the uninterrupted run's."""
    for _ in range(2):
        time.sleep(1.5)
        cmd = [str(BIN / "opal-checkpoint"), *options, "-w", str(work), str(proc.pid)]
        show(cmd)
        print(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout, end="")
    print(f"$ kill -KILL {proc.pid}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cmd = [str(BIN / "opal-restart"), str(work / f"opal_snapshot_{proc.pid}.ckpt")]
    show(cmd)
    return compare(subprocess.run(cmd, cwd=work, capture_output=True, text=True).stdout, ref)


def kill_job(sid: int) -> None:
    """SIGKILL every process of the job's session: what a node failure does to it."""
    for _ in range(100):
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                alive.append(int(stat.parent.name))
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def mpi_job(work: Path) -> bool:
    print("\n== A 4-rank MPI job: mpirun -am ft-enable-cr / ompi-checkpoint / ompi-restart ==")
    app = [sys.executable, str(HERE / "mpi_stencil.py"), "400", "0.02"]
    ref = subprocess.run([str(BIN / "mpiexec"), "-n", "4", app[0], app[1], "400", "0"],
                         capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    cmd = [str(BIN / "mpirun"), "-am", "ft-enable-cr", "--mca", "snapc_base_global_snapshot_dir",
           str(work), "-np", "4", *app]
    show(cmd)
    job = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    for _ in range(2):
        time.sleep(2.5)
        cmd = [str(BIN / "ompi-checkpoint"), str(job.pid)]
        show(cmd)
        print(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout, end="")
    print(f"$ kill -KILL <every process of job {job.pid}>")
    kill_job(job.pid)
    job.wait()
    cmd = [str(BIN / "ompi-restart"), str(work / f"ompi_global_snapshot_{job.pid}.ckpt")]
    show(cmd)
    return compare(subprocess.run(cmd, cwd=work, capture_output=True, text=True).stdout, ref)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pycrs-demo-") as tmp:
        work = Path(tmp)
        ctl = work / "ctl"
        ctl.mkdir(mode=0o700)
        os.environ["PYCRS_CONTROL_DIR"] = str(ctl)
        results = [single_process(work), from_outside(work), self_saving(work), mpi_job(work)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
