"""mpi4py's own test suite as the yardstick for "MPI behaves the same under C/R".

The suite is the `test/` directory of mpi4py's source distribution for the installed version,
downloaded once from PyPI (its sha256 checked against the index) into a cache. Each module runs
as a real MPI job; `recorder.py` writes every test's outcome per rank, so a run under pycrs can
be compared test by test with a run under the plain launcher.

Run by hand for a table of every module (plain launcher against the layer):

    .venv/bin/python -m tests.peer.suite --np 2 --crs blcr [MODULE...]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

RECORDER = Path(__file__).resolve().parent / "recorder.py"
INDEX = "https://pypi.org/simple/mpi4py/"


def cache_dir() -> Path:
    """Where the suite is kept between runs: $PYCRS_TEST_CACHE, else ~/.cache/pycrs."""
    given = os.environ.get("PYCRS_TEST_CACHE")
    return Path(given) if given else Path.home() / ".cache" / "pycrs"


def installed_mpi4py(python: str = sys.executable) -> str:
    out = subprocess.run([python, "-c", "import mpi4py; print(mpi4py.__version__)"],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def suite_dir(version: str | None = None) -> Path:
    """The `test/` directory of mpi4py's sdist for `version` (default: the installed one),
    downloaded and unpacked on first use."""
    version = version or installed_mpi4py()
    where = cache_dir() / f"mpi4py-{version}" / "test"
    if (where / "main.py").is_file():
        return where
    name = f"mpi4py-{version}.tar.gz"
    with urllib.request.urlopen(INDEX, timeout=60) as r:
        page = r.read().decode()
    m = re.search(r'href="([^"]*/' + re.escape(name) + r')#sha256=([0-9a-f]{64})"', page)
    if not m:
        raise RuntimeError(f"{name} is not on {INDEX}")
    url, digest = m.groups()
    with urllib.request.urlopen(url, timeout=300) as r:
        data = r.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise RuntimeError(f"{name}: sha256 differs from the index's")
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=where.parent))
    prefix = f"mpi4py-{version}/test/"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(tmp, members=members, filter="data")
    try:
        tmp.rename(where)
    except OSError:  # another run unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return where


def modules(suite: Path) -> list[str]:
    return sorted(p.stem for p in suite.glob("test_*.py"))


@dataclass
class Verdict:
    """What one run of one module gave: every test's outcome on every rank, whether each
    rank's run ended (and with what status), and the launcher's exit code."""

    outcomes: dict[int, dict[str, str]] = field(default_factory=dict)
    ended: dict[int, int] = field(default_factory=dict)
    returncode: int | None = None
    output: str = ""

    @classmethod
    def read(cls, out: Path, returncode: int | None, output: str) -> Verdict:
        v = cls(returncode=returncode, output=output)
        for f in sorted(out.glob("rank-*.txt")):
            rank = int(f.stem.split("-")[1])
            tests: dict[str, str] = {}
            for line in f.read_text(errors="replace").splitlines():
                outcome, _, name = line.partition(" ")
                if outcome == "END":
                    v.ended[rank] = int(name)
                elif name:
                    # a test recorded twice (a subtest's failure, then the test) keeps the worst
                    if tests.get(name) not in ("FAIL", "ERROR"):
                        tests[name] = outcome
            v.outcomes[rank] = tests
        return v

    def summary(self) -> str:
        if not self.outcomes:
            return f"no test ran (exit {self.returncode})"
        counts = Counter(o for tests in self.outcomes.values() for o in tests.values())
        ended = "ended" if self.ended and len(self.ended) == len(self.outcomes) else "CRASHED"
        parts = ", ".join(f"{k} {counts[k]}" for k in sorted(counts))
        return f"{ended} (exit {self.returncode}): {parts}"

    def differences(self, reference: Verdict) -> list[str]:
        """How this run differs from `reference`, one line each (empty: the same verdict)."""
        diffs = []
        if (reference.returncode == 0) != (self.returncode == 0):
            diffs.append(f"launcher exit {self.returncode}, reference {reference.returncode}")
        for rank in sorted(set(reference.outcomes) | set(self.outcomes)):
            ref, got = reference.outcomes.get(rank, {}), self.outcomes.get(rank, {})
            if reference.ended.get(rank) != self.ended.get(rank):
                diffs.append(f"rank {rank}: run ended {self.ended.get(rank, 'never')}, "
                             f"reference {reference.ended.get(rank, 'never')}")
            for name in sorted(set(ref) | set(got)):
                if ref.get(name) != got.get(name):
                    diffs.append(f"rank {rank}: {name}: {got.get(name, 'not run')}, "
                                 f"reference {ref.get(name, 'not run')}")
        return diffs


def run_module(launch: list[str], suite: Path, module: str | list[str], out: Path, *,
               python: str, timeout: float = 600, env: dict[str, str] | None = None,
               during: object = None) -> Verdict:
    """Run `module` (or several, in one job) of the suite as `launch + [python, recorder, ...]`;
    `during(proc)`, if given, is called once the job is started (to checkpoint it, say) and may
    return a new (returncode, output) pair for a job it restarted."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    names = [module] if isinstance(module, str) else module
    cmd = [*launch, python, str(RECORDER), str(suite), str(out), *names]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=suite, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env=env, start_new_session=True)
        try:
            result = during(proc) if callable(during) else None
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.seek(0)
        output = log.read()
    if result is not None:
        rc, more = result
        output += more
    return Verdict.read(out, rc, output)


def main() -> None:
    parser = argparse.ArgumentParser(description="mpi4py's test suite, plain launcher against "
                                     "pycrs's mpirun -am ft-enable-cr, module by module")
    parser.add_argument("modules", nargs="*")
    parser.add_argument("--np", type=int, default=2)
    parser.add_argument("--crs", default="blcr")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    suite = suite_dir()
    plain = [str(bindir / "mpiexec"), "-n", str(args.np)]
    layer = [str(bindir / "mpirun"), "-am", "ft-enable-cr", "--mca", "crs", args.crs,
             "-np", str(args.np)]
    same = 0
    names = args.modules or modules(suite)
    with tempfile.TemporaryDirectory() as tmp:
        for m in names:
            t0 = time.monotonic()
            ref = run_module(plain, suite, m, Path(tmp) / "plain", python=sys.executable,
                             timeout=args.timeout)
            t1 = time.monotonic()
            got = run_module(layer, suite, m, Path(tmp) / "layer", python=sys.executable,
                             timeout=args.timeout)
            t2 = time.monotonic()
            diffs = got.differences(ref)
            same += not diffs
            print(f"{m:24s} {'same' if not diffs else 'DIFFERENT':9s} plain {t1 - t0:5.1f}s "
                  f"layer {t2 - t1:5.1f}s  {got.summary()}", flush=True)
            for d in diffs[:5]:
                print(f"    {d}")
            if len(diffs) > 5:
                print(f"    ... {len(diffs) - 5} more")
    print(f"{same} of {len(names)} modules give the same verdict")


if __name__ == "__main__":
    main()
