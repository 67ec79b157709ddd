"""A job that checkpoints itself: snapc_base_period (a fixed interval, or Young's optimal one
from the job's measured cost), snapc_base_keep (only the newest sequences stay), and what a
user sees when a value is wrong."""
from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest

from conftest import BIN, MPI, run
from crs.params import ParamError, Params
from helpers import wait_until
from snapc.period import FIRST_COST, Period
from snapc.storage import GlobalSnapshot
from test_transparent_mpi import (
    LONG_STEPS,
    MPICH,
    one_line_error,
    refused_at_launch,
    restarted,
    start,
)

MCA = ("--mca", "snapc_base_period", "1", "--mca", "snapc_base_keep", "2")


def finished_seqs(gdir: Path) -> int:
    """How many sequences the job has committed so far, removed ones included."""
    try:
        meta = (gdir / "global_snapshot_meta.data").read_text()
    except FileNotFoundError:
        return 0
    return meta.count("# Finished Seq:")


def test_periodic_checkpoints_keep_the_newest_two_then_restart(tmp_path: Path) -> None:
    """An unmodified program under -am ft-enable-cr with a period of 1 s and keep 2: it is
    checkpointed again and again with no tool; only the two newest sequences stay, the
    older ones are recorded as removed and refused by name; killed, it restarts from the newest
    to the uninterrupted run's output."""
    job = start(tmp_path, 3, steps=LONG_STEPS, mca=MCA)
    gdir = tmp_path / f"ompi_global_snapshot_{job.pid}.ckpt"
    wait_until(lambda: finished_seqs(gdir) >= 3 or job.proc.poll() is not None,
               "three periodic checkpoints", timeout=600)
    assert job.proc.poll() is None, job.finish()
    job.kill()
    gs = GlobalSnapshot(gdir)
    assert len(gs.finished) == 2 and gs.removed, (gs.finished, gs.removed)
    assert sorted(p.name for p in gdir.iterdir() if p.name.isdigit()) == \
        sorted(str(s) for s in gs.finished)
    old = min(gs.removed)
    res = run([MPICH.tool("ompi-restart"), "--seq", str(old), str(gdir)])
    assert res.returncode == 1
    one_line_error(res.stderr, "ompi-restart", f"sequence {old} was removed", "snapc_base_keep")
    restarted(gdir, 3, steps=LONG_STEPS)


@pytest.mark.parametrize("name,value", [("snapc_base_period", "soon"),
                                        ("snapc_base_period", "-5"),
                                        ("snapc_base_keep", "two")])
def test_bad_values_are_refused_at_launch(tmp_path: Path, name: str, value: str) -> None:
    refused_at_launch(tmp_path, name, value)


def params(**values: str) -> Params:
    """Parameters as given on a command line (the environment is left out)."""
    import snapc  # noqa: F401 - registers SnapC's parameters

    return Params(cli=[(f"snapc_base_{k}", v) for k, v in values.items()], env={})


def test_the_interval_of_auto_is_youngs_from_the_measured_cost() -> None:
    period = Period(params(period="auto", mtbf="7200"))
    assert period.interval() == pytest.approx(math.sqrt(2 * FIRST_COST * 7200))
    for cost in (4.0, 2.0, 3.0):
        period.measured(cost)
    assert period.interval() == pytest.approx(math.sqrt(2 * 3.0 * 7200))
    period.measured(9.0)  # the mean of the last three: 2, 3, 9
    assert period.interval() == pytest.approx(math.sqrt(2 * (14 / 3) * 7200))
    tiny = Period(params(period="auto", mtbf="1"))
    tiny.measured(10.0)
    assert tiny.interval() == pytest.approx(20.0)  # never below twice the cost


def test_fixed_and_off() -> None:
    assert Period(params(period="0")).interval() is None
    assert Period(params(period="30")).interval() == 30.0
    with pytest.raises(ParamError, match="snapc_base_mtbf"):
        Period(params(period="auto", mtbf="0"))


def test_a_self_job_checkpoints_itself_too(tmp_path: Path) -> None:
    """With callbacks (self, at safe points): periodic checkpoints while it runs, and its output
    is the uninterrupted run's."""
    from test_snapc_e2e import STENCIL

    mpich = MPI("mpich", BIN)
    ref = run([*mpich.plain(2), mpich.python, STENCIL, "300", "0"])
    start_ = time.monotonic()
    res = run([mpich.tool("mpirun"), "-am", "ft-enable-cr", "--mca", "crs", "self",
               "--mca", "snapc_base_period", "2", "--mca", "snapc_base_verbose", "1",
               "--mca", "snapc_base_global_snapshot_dir",
               str(tmp_path), "-np", "2", mpich.python, STENCIL, "300", "0.02"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ref.stdout
    (gdir,) = tmp_path.glob("ompi_global_snapshot_*.ckpt")
    finished = GlobalSnapshot(gdir).finished
    assert len(finished) >= 1, time.monotonic() - start_
    assert "periodic checkpoint failed" not in res.stderr, res.stderr
    logged = re.findall(r"^mpirun: periodic checkpoint: sequence (\d+) took \d+\.\d\d s; next in "
                        r"2\.0 s$", res.stderr, re.M)  # snapc_base_verbose: one line each
    assert [int(seq) for seq in logged] == finished, res.stderr


def test_auto_says_the_cost_it_used() -> None:
    period = Period(params(period="auto", mtbf="7200"))
    for cost in (4.0, 2.0):
        period.measured(cost)
    assert period.describe() == ("next in 207.8 s (auto: cost 3.00 s, the mean of the last 2, "
                                 "MTBF 7200 s)")
    assert Period(params(period="30")).describe() == "next in 30.0 s"
