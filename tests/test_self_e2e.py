"""End to end, as a user drives it: a process under pycrs, opal-checkpoint, SIGKILL, opal-restart,
and the restarted process ends exactly as an uninterrupted run does."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    APPS,
    ROOT,
    expected_after,
    restarted_at,
    run,
    tool,
    tree_digest,
)
from helpers import proc_state, start_under_pycrs, wait_for_endpoint, wait_for_path, wait_until

LOOP = str(ROOT / "examples" / "numpy_loop.py")
STEPS, DELAY = "300", "0.02"


@pytest.fixture(scope="module")
def reference() -> list[str]:
    """The output of an uninterrupted run."""
    out = run([sys.executable, LOOP, STEPS, "0"], check=True).stdout
    return out.splitlines()


def checkpoint(pid: int, where: Path, *extra: str) -> Path:
    res = run([tool("opal-checkpoint"), "-w", str(where), *extra, str(pid)])
    assert res.returncode == 0, res.stderr
    m = re.fullmatch(r"Local Snapshot Reference: (\S+)\n", res.stdout)
    assert m, res.stdout
    return Path(m.group(1))


def test_checkpoint_twice_kill_restart(tmp_path: Path, reference: list[str]) -> None:
    proc = start_under_pycrs([LOOP, STEPS, DELAY], cwd=tmp_path)
    time.sleep(1.0)
    first = checkpoint(proc.pid, tmp_path)
    first_bytes = (first / "state.buffers").read_bytes()
    time.sleep(1.0)
    second = checkpoint(proc.pid, tmp_path)
    assert first == second == tmp_path / f"opal_snapshot_{proc.pid}.ckpt"
    assert (second / "state.buffers").read_bytes() != first_bytes, "second snapshot is newer state"
    assert not list(tmp_path.glob(".opal_snapshot_*")), "no partial snapshot left behind"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    res = run([tool("opal-restart"), str(second)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    step = restarted_at(res.stderr)
    assert 0 < step < int(STEPS)
    assert res.stdout.splitlines() == expected_after(reference, step)


def test_restarted_process_can_be_checkpointed_and_restarted_again(tmp_path: Path,
                                                                   reference: list[str]) -> None:
    proc = start_under_pycrs([LOOP, STEPS, DELAY], cwd=tmp_path)
    time.sleep(0.8)
    snap = checkpoint(proc.pid, tmp_path)
    proc.kill()
    proc.wait()

    again = subprocess.Popen([tool("opal-restart"), str(snap)], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_endpoint(again)  # opal-restart became the program: same PID, under pycrs again
    time.sleep(0.8)
    snap2 = checkpoint(again.pid, tmp_path)
    again.kill()
    again.wait()
    assert snap2 != snap

    res = run([tool("opal-restart"), snap2.name], cwd=tmp_path,
              env={**__import__("os").environ, "OMPI_MCA_crs_base_snapshot_dir": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    step = restarted_at(res.stderr)
    assert res.stdout.splitlines() == expected_after(reference, step)


def test_term_ends_the_process_after_the_snapshot(tmp_path: Path, reference: list[str]) -> None:
    proc = start_under_pycrs([LOOP, STEPS, DELAY], cwd=tmp_path)
    time.sleep(0.8)
    snap = checkpoint(proc.pid, tmp_path, "--term")
    assert proc.wait(timeout=60) == 0
    assert "result" not in proc.stdout.read()
    res = run([tool("opal-restart"), str(snap)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == expected_after(reference, restarted_at(res.stderr))


def test_stop_then_sigcont(tmp_path: Path, reference: list[str]) -> None:
    proc = start_under_pycrs([LOOP, STEPS, DELAY], cwd=tmp_path)
    time.sleep(0.8)
    snap = checkpoint(proc.pid, tmp_path, "--stop")
    wait_until(lambda: proc_state(proc.pid) == "T", "the process to stop", 30)
    proc.send_signal(signal.SIGCONT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert out.splitlines() == reference  # the original run was only paused
    res = run([tool("opal-restart"), str(snap)], cwd=tmp_path)
    assert res.stdout.splitlines() == expected_after(reference, restarted_at(res.stderr))


@pytest.mark.parametrize("prefix", [None, "myapp"])
def test_open_mpi_by_name_callbacks(tmp_path: Path, prefix: str | None) -> None:
    app = [str(APPS / "byname.py"), "120", "0.02"] + ([prefix] if prefix else [])
    ref = run([sys.executable, *app[:1], "120", "0", *app[3:]], check=True).stdout
    env = dict(__import__("os").environ)
    if prefix:
        env["OMPI_MCA_crs_self_prefix"] = prefix
    proc = start_under_pycrs(app, cwd=tmp_path, env=env)
    time.sleep(0.8)
    snap = checkpoint(proc.pid, tmp_path)
    time.sleep(0.3)
    proc.kill()
    _, err = proc.communicate()
    assert "continue after step" in err  # the continue callback ran after the checkpoint
    res = run([tool("opal-restart"), str(snap)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "restart callback at step" in res.stderr
    assert res.stdout == ref


def test_application_asks_for_its_own_checkpoint(tmp_path: Path) -> None:
    app = [str(APPS / "features.py"), "selfreq", "90", str(tmp_path / "mine.ckpt")]
    ref = run([sys.executable, str(APPS / "features.py"), "plain", "90"], check=True).stdout
    proc = start_under_pycrs(app, cwd=tmp_path)
    assert proc.wait(timeout=120) == -signal.SIGKILL  # it killed itself after its checkpoint
    res = run([tool("opal-restart"), str(tmp_path / "mine.ckpt")], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ref


def _enter_critical_section(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    marker = tmp_path / "inside"
    proc = start_under_pycrs([str(APPS / "features.py"), "critical", "60", str(marker)],
                             cwd=tmp_path)
    wait_for_path(marker, proc, "the critical section", 60)
    return proc, marker


def _request_waiting(pid: int, where: Path) -> subprocess.Popen[str]:
    """opal-checkpoint -v, returned once the process has taken the request and waits with it."""
    tool_proc = subprocess.Popen([tool("opal-checkpoint"), "-v", "-w", str(where), str(pid)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in tool_proc.stderr:  # type: ignore[union-attr]
        if "waiting for the next safe point" in line:
            return tool_proc
    raise AssertionError(f"request never reached the process: {tool_proc.communicate()}")


def test_critical_section_defers_a_request(tmp_path: Path) -> None:
    proc, marker = _enter_critical_section(tmp_path)
    request = _request_waiting(proc.pid, tmp_path)  # sent inside the section: it must wait
    time.sleep(0.5)
    assert request.poll() is None, "no checkpoint inside the critical section"
    (tmp_path / "inside.release").touch()
    assert request.wait(timeout=120) == 0
    out, err = proc.communicate(timeout=120)
    taken = int(re.search(r"checkpoint at step (\d+)", err).group(1))  # type: ignore[union-attr]
    assert taken >= 40


def test_failed_checkpoint_leaves_process_and_earlier_snapshot(tmp_path: Path) -> None:
    proc = start_under_pycrs([str(APPS / "features.py"), "failing", "80"], cwd=tmp_path)
    time.sleep(0.5)
    snap = checkpoint(proc.pid, tmp_path)
    before = tree_digest(snap)
    res = run([tool("opal-checkpoint"), "-w", str(tmp_path), str(proc.pid)])
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "disk quota of the application exceeded" in res.stderr
    assert tree_digest(snap) == before
    assert not list(tmp_path.glob(".opal_snapshot_*"))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.startswith("result")  # the application went on


def test_overlapping_requests_are_refused_clearly(tmp_path: Path) -> None:
    proc, marker = _enter_critical_section(tmp_path)
    first = _request_waiting(proc.pid, tmp_path)
    second = run([tool("opal-checkpoint"), "-w", str(tmp_path), str(proc.pid)])
    assert second.returncode == 1
    assert "already in progress" in second.stderr and second.stderr.count("\n") == 1
    (tmp_path / "inside.release").touch()
    assert first.wait(timeout=120) == 0
    proc.communicate(timeout=120)
