"""A restore never harms the user's files: a job's output file on its standard descriptors, an
append-mode log and a file another process writes too keep every byte written after the
checkpoint, by the process itself before it was killed and by others (the shell's "Killed"
line); the process's own private output file is cut back to its size at the checkpoint, as its
memory is, and ``opal-restart -v`` says so. Under blcr (saved from outside) and mtcp."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run, tool

pytestmark = pytest.mark.usefixtures("private_home")

STEPS = 700
APP = f'''
import sys, time
private = open("private.dat", "w")          # this process's own output, descriptor > 2
log = open("append.log", "a")               # an append-mode log
shared = open("shared.log", "r+")           # held open by another process too
shared.seek(0, 2)
for n in range({STEPS}):
    print(f"line {{n}}", flush=True)
    for f in (private, log, shared):
        f.write(f"rec {{n}}\\n")
        f.flush()
    time.sleep(0.01)
print("end", flush=True)
'''


def lines_until(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert proc.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no {text!r} in {path}"
        time.sleep(0.02)


@pytest.mark.parametrize("component", ["blcr", "mtcp"])
def test_restore_keeps_what_is_not_the_process_own(tmp_path: Path, component: str) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "shared.log").write_text("written by another process first\n")
    job_out = tmp_path / "job.out"
    start = ([tool("pycrs"), "run", "--mca", "crs", "mtcp"] if component == "mtcp" else [])
    with open(tmp_path / "shared.log", "a") as other, open(job_out, "w") as out:
        proc = subprocess.Popen([*start, sys.executable, "app.py"], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            lines_until(job_out, "line 100\n", proc)
            earliest = int(job_out.read_text().split()[-1])
            res = run([tool("opal-checkpoint"), "--mca", "crs", component, "-w", str(tmp_path),
                       str(proc.pid)])
            assert res.returncode == 0, res.stderr
            latest = int(job_out.read_text().split()[-1])
            lines_until(job_out, f"line {latest + 150}\n", proc)
        finally:
            proc.kill()
            proc.wait()
        # what else writes these files meanwhile: the shell, another process
        with open(job_out, "a") as shell:
            shell.write("Killed\n")
        other.write("another process wrote this after the kill\n")
        other.flush()
        before_restore = {p: p.read_bytes() for p in (job_out, tmp_path / "append.log",
                                                      tmp_path / "shared.log")}
        res = run([tool("opal-restart"), "-v", str(tmp_path / f"opal_snapshot_{proc.pid}.ckpt")],
                  cwd=tmp_path)
        assert res.returncode == 0, res.stderr

    for path, old in before_restore.items():  # nothing written since the checkpoint is lost
        now = path.read_bytes()
        assert now.startswith(old), path
        assert b"\0" not in now, path
    out = job_out.read_text().splitlines()
    killed = out.index("Killed")
    assert out[:killed] == [f"line {n}" for n in range(killed)]  # the first run, whole
    resumed = out[killed + 1:]  # the restored process goes on from where it was saved
    assert resumed[-1] == "end" and resumed[0].startswith("line ")
    first = int(resumed[0].split()[1])
    assert earliest < first <= latest + 1
    assert resumed[:-1] == [f"line {n}" for n in range(first, STEPS)]
    # the process's own output is as an uninterrupted run's: cut back, then written on
    assert (tmp_path / "private.dat").read_text() == "".join(f"rec {n}\n" for n in range(STEPS))
    assert f"cut {tmp_path / 'private.dat'} back to" in res.stderr, res.stderr
    assert "job.out" not in res.stderr and "append.log" not in res.stderr
    assert "shared.log" not in res.stderr
    shared = (tmp_path / "shared.log").read_text()
    assert shared.endswith(f"rec {STEPS - 1}\n") and "after the kill" in shared
