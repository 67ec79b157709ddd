"""The ``mtcp`` component on real processes: the process saves itself with the in-process
checkpoint kernel (libmtcp.so, preloaded or loaded with ctypes), ``opal-checkpoint --mca crs mtcp``
commits the snapshot, ``opal-restart`` brings it back with the restart program (no ptrace) or,
with ``--mca crs_mtcp_restart ptrace``, with the blcr restorer.

A C program and a Python process (a numpy array being updated, threads, a file being written) are
checkpointed twice while they run, SIGKILLed and restored: they end exactly as an uninterrupted
run. A restored process is checkpointed and restored again. Bad input gets one line and a
non-zero exit.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tool
from crs.plugins.mtcp import library_path
from crs.plugins.mtcp.restart import AREA, AREA_LEN
from helpers import Session, alive, proc_stat, start_program, wait_until
from test_blcr_states import TOOL_TIMEOUT, restore

pytestmark = pytest.mark.usefixtures("private_home")

PROGRAMS = Path(__file__).resolve().parent / "mtcp_programs"
PY_APP = PROGRAMS / "py_app.py"


RESTORERS = {"program": (), "ptrace": ("--mca", "crs_mtcp_restart", "ptrace")}


def stdout_after_ready(out: str) -> list[str]:
    return [line for line in out.splitlines() if line != "READY"]


@pytest.fixture(scope="module")
def c_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc")
    exe = tmp_path_factory.mktemp("bin") / "c_app"
    res = subprocess.run([gcc, "-O1", "-pthread", "-Wall", "-o", str(exe),
                          str(PROGRAMS / "c_app.c"), "-lm"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return exe


def preloaded() -> dict[str, str]:
    return {"LD_PRELOAD": str(library_path())}


def ask(pid: int, message: dict) -> list[dict]:
    """One request to the kernel of ``pid``, every event of the answer."""
    path = Path(os.environ["PYCRS_CONTROL_DIR"]) / f"mtcp-{pid}.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def wait_for_kernel(pid: int, timeout: float = 30.0) -> None:
    path = Path(os.environ["PYCRS_CONTROL_DIR"]) / f"mtcp-{pid}.sock"
    wait_until(path.exists, f"the kernel socket {path}", timeout)


FORKED = ("crs_mtcp_forked", "1")
FAST, STRONG = ("crs_mtcp_compress", "fast"), ("crs_mtcp_compress", "strong")


def mca_args(*settings: tuple[str, str]) -> list[str]:
    return [x for name, value in settings for x in ("--mca", name, value)]


def checkpoint(pid: int, where: Path, *settings: tuple[str, str]) -> Path:
    res = subprocess.run([tool("opal-checkpoint"), "--mca", "crs", "mtcp", *mca_args(*settings),
                          "-w", str(where), str(pid)], capture_output=True, text=True,
                         timeout=TOOL_TIMEOUT)
    assert res.returncode == 0, f"opal-checkpoint of {pid} failed ({res.returncode}):\n{res.stderr}"
    m = re.search(r"^Local Snapshot Reference: (.+)$", res.stdout, re.M)
    assert m, res.stdout
    snap = Path(m.group(1))
    assert snap == where.absolute() / f"opal_snapshot_{pid}.ckpt" and snap.is_dir()
    meta = (snap / "snapshot_meta.data").read_text()
    assert "# OPAL CRS Component: mtcp" in meta
    assert re.search(r"# File: pages.img \d+ crc32c/1048576:pages.crc", meta), meta
    settings_ = dict(settings)
    image = json.loads((snap / "image.json").read_text())
    compress = settings_.get("crs_mtcp_compress", "none")
    assert image.get("pages_codec", "none") == ("none" if compress == "none" else "lzp1")
    assert f"# MTCP Compress: {compress}" in meta
    assert f"# MTCP Forked: {settings_.get('crs_mtcp_forked', '0')}" in meta
    return snap


def meta_seconds(snap: Path, what: str) -> float:
    m = re.search(rf"^# MTCP {what} Seconds: ([0-9.]+)$",
                  (snap / "snapshot_meta.data").read_text(), re.M)
    assert m, f"no MTCP {what} Seconds in the metadata of {snap}"
    return float(m.group(1))


def one_line_error(res: subprocess.CompletedProcess[str], prog: str) -> str:
    assert res.returncode != 0, f"{prog} succeeded: {res.stdout}"
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: "), res.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------
# A C program with the kernel preloaded

def c_reference(c_app: Path, tmp_path: Path) -> tuple[list[str], bytes]:
    out = tmp_path / "ref.txt"
    res = subprocess.run([str(c_app), str(out)], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return stdout_after_ready(res.stdout), out.read_bytes()


MODES = {"plain": (), "forked": (FORKED,), "fast": (FAST,), "forked-strong": (FORKED, STRONG),
         "forked-fast": (FORKED, FAST)}


@pytest.mark.parametrize("mode,restorer", [("plain", "program"), ("plain", "ptrace"),
                                           ("forked", "program"), ("fast", "program"),
                                           ("fast", "ptrace"), ("forked-strong", "program")])
def test_c_program_ends_as_an_uninterrupted_run(session: Session, c_app: Path, tmp_path: Path,
                                                mode: str, restorer: str) -> None:
    """Checkpointed twice while it runs (written by the process itself or by a forked child,
    raw or compressed), SIGKILLed, restored (by the restart program or the ptrace restorer):
    the same end."""
    settings = MODES[mode]
    expected = c_reference(c_app, tmp_path)
    out = tmp_path / "out.txt"
    child = start_program(session, [str(c_app), str(out)], env=preloaded())
    wait_for_kernel(child.pid)
    assert ask(child.pid, {"op": "ping"})[-1] == {"event": "done", "pid": child.pid,
                                                  "restarts": 0, "signal": 62}
    time.sleep(0.5)
    checkpoint(child.pid, tmp_path / "snaps", *settings)
    time.sleep(0.5)
    snap = checkpoint(child.pid, tmp_path / "snaps", *settings)
    assert child.popen.poll() is None, "the program ended before the second checkpoint"
    child.kill_and_reap()
    if dict(settings).get("crs_mtcp_compress", "none") != "none":
        image = json.loads((snap / "image.json").read_text())
        assert (snap / "pages.img").stat().st_size < image["pages_raw_bytes"], "not smaller"
    restart = restore(session, snap, child.pid, str(c_app), *RESTORERS[restorer])
    code, stdout, err = restart.finish(TOOL_TIMEOUT)
    assert code == 0, f"restored program ended with {code}:\n{err}"
    assert (stdout_after_ready(stdout), out.read_bytes()) == expected


@pytest.mark.parametrize("second", RESTORERS)
def test_restored_process_checkpointed_and_restored_again(session: Session, c_app: Path,
                                                          tmp_path: Path, second: str) -> None:
    """Restored by the restart program, checkpointed again, restored again (by either)."""
    expected = c_reference(c_app, tmp_path)
    out = tmp_path / "out.txt"
    child = start_program(session, [str(c_app), str(out)], env=preloaded())
    wait_for_kernel(child.pid)
    time.sleep(0.3)
    first_snap = checkpoint(child.pid, tmp_path / "gen1")
    child.kill_and_reap()
    first = restore(session, first_snap, child.pid, str(c_app))
    wait_for_kernel(child.pid)
    assert ask(child.pid, {"op": "ping"})[-1]["restarts"] == 1  # the restored kernel serves
    time.sleep(0.3)
    second_snap = checkpoint(child.pid, tmp_path / "gen2")
    os.kill(child.pid, 9)
    first.finish(TOOL_TIMEOUT)
    again = restore(session, second_snap, child.pid, str(c_app), *RESTORERS[second])
    code, stdout, err = again.finish(TOOL_TIMEOUT)
    assert code == 0, f"program restored twice ended with {code}:\n{err}"
    assert (stdout_after_ready(stdout), out.read_bytes()) == expected


def fds_of(pid: int) -> dict[int, str]:
    d = f"/proc/{pid}/fd"
    return {int(n): os.readlink(f"{d}/{n}") for n in os.listdir(d)}


def test_restart_program_leaves_nothing_behind(session: Session, c_app: Path,
                                               tmp_path: Path) -> None:
    """The restored process is the original one: its executable, the same descriptors, no
    tracer, and nothing of the restart program in its memory."""
    expected = c_reference(c_app, tmp_path)
    out = tmp_path / "out.txt"
    child = start_program(session, [str(c_app), str(out)], env=preloaded())
    wait_for_kernel(child.pid)
    before = fds_of(child.pid)
    snap = checkpoint(child.pid, tmp_path / "snaps")
    child.kill_and_reap()
    restart = restore(session, snap, child.pid, str(c_app))
    wait_for_kernel(child.pid)
    assert os.readlink(f"/proc/{child.pid}/exe") == str(c_app)
    assert fds_of(child.pid).keys() - {3} == before.keys() - {3}  # 3: the kernel's socket
    status = Path(f"/proc/{child.pid}/status").read_text()
    assert re.search(r"^TracerPid:\s+0$", status, re.M), status
    for line in Path(f"/proc/{child.pid}/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        assert hi <= AREA or AREA + AREA_LEN <= lo, f"left in the restart area: {line}"
    code, stdout, err = restart.finish(TOOL_TIMEOUT)
    assert code == 0, err
    assert (stdout_after_ready(stdout), out.read_bytes()) == expected


def test_restart_program_stop_and_pid_namespace(session: Session, c_app: Path,
                                                tmp_path: Path) -> None:
    """--stop: back stopped, goes on at SIGCONT; --pid-namespace: back with its PID in a fresh
    namespace (its PID here is another)."""
    expected = c_reference(c_app, tmp_path)
    out = tmp_path / "out.txt"
    child = start_program(session, [str(c_app), str(out)], env=preloaded())
    wait_for_kernel(child.pid)
    snap = checkpoint(child.pid, tmp_path / "snaps")
    child.kill_and_reap()
    restart = restore(session, snap, child.pid, str(c_app), "--stop")
    wait_until(lambda: proc_stat(child.pid)[0] == "T", "the process stops", TOOL_TIMEOUT)
    time.sleep(0.3)
    assert proc_stat(child.pid)[0] == "T"
    os.kill(child.pid, signal.SIGCONT)
    code, stdout, err = restart.finish(TOOL_TIMEOUT)
    assert code == 0, err
    assert (stdout_after_ready(stdout), out.read_bytes()) == expected

    ns = session.start([tool("opal-restart"), "-v", "--pid-namespace", str(snap)])
    here = int(ns.err.wait_for(rb"restored process (\d+)", TOOL_TIMEOUT, "opal-restart").group(1))
    session.restored.append((here, str(c_app)))
    nspid = re.search(r"^NSpid:\s+(.*)$", Path(f"/proc/{here}/status").read_text(), re.M)
    assert nspid and nspid.group(1).split()[-1] == str(child.pid), nspid
    code, stdout, err = ns.finish(TOOL_TIMEOUT)
    assert code == 0, err
    assert (stdout_after_ready(stdout), out.read_bytes()) == expected


# ---------------------------------------------------------------------------------------------
# A Python process: the kernel preloaded by `pycrs run --mca crs mtcp`, or loaded by ctypes

@pytest.mark.parametrize("how,mib,steps,settings,restorer", [
    ("pycrs-run", 1024, "900", (), "program"), ("ctypes", 64, "9000", (), "program"),
    ("ctypes", 64, "9000", (), "ptrace"), ("pycrs-run", 1024, "900", (FORKED,), "program"),
    ("ctypes", 64, "9000", (FORKED, FAST), "program"),
    ("ctypes", 64, "9000", (FORKED, FAST), "ptrace")],
    ids=["pycrs-run", "ctypes", "ctypes-ptrace", "pycrs-run-forked", "ctypes-forked-fast",
         "ctypes-forked-fast-ptrace"])
def test_python_process_ends_as_an_uninterrupted_run(session: Session, tmp_path: Path, how: str,
                                                     mib: int, steps: str, settings: tuple,
                                                     restorer: str) -> None:
    """Run (about 10 s), checkpoint twice while it runs, SIGKILL, restore: the same end."""
    ref = tmp_path / "ref.txt"
    res = subprocess.run([sys.executable, str(PY_APP), steps, str(ref), str(mib)],
                         capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    expected = (stdout_after_ready(res.stdout), ref.read_bytes())
    out = tmp_path / "out.txt"
    if how == "pycrs-run":
        argv = [tool("pycrs"), "run", "--mca", "crs", "mtcp", sys.executable, str(PY_APP), steps,
                str(out), str(mib)]
    else:
        argv = [sys.executable, str(PY_APP), steps, str(out), str(mib), "load"]
    child = start_program(session, argv)
    wait_for_kernel(child.pid)
    time.sleep(1.0)
    checkpoint(child.pid, tmp_path / "snaps", *settings)
    time.sleep(1.0)
    snap = checkpoint(child.pid, tmp_path / "snaps", *settings)
    assert child.popen.poll() is None, "the program ended before the second checkpoint"
    child.kill_and_reap()
    restart = restore(session, snap, child.pid, str(PY_APP), *RESTORERS[restorer])
    code, stdout, err = restart.finish(TOOL_TIMEOUT)
    assert code == 0, f"restored process ended with {code}:\n{err}"
    assert (stdout_after_ready(stdout), out.read_bytes()) == expected


# ---------------------------------------------------------------------------------------------
# Bad input

def test_process_without_the_kernel(session: Session, c_app: Path, tmp_path: Path) -> None:
    child = start_program(session, [str(c_app), str(tmp_path / "out.txt")])
    where = tmp_path / "snaps"
    res = subprocess.run([tool("opal-checkpoint"), "--mca", "crs", "mtcp", "-w", str(where),
                          str(child.pid)], capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    line = one_line_error(res, "opal-checkpoint")
    assert f"process {child.pid} has no mtcp kernel loaded (start it with" in line, line
    assert str(library_path()) in line
    assert not where.exists() or not list(where.iterdir())
    assert child.popen.poll() is None


def test_descriptor_it_cannot_restore_is_named(session: Session, c_app: Path,
                                               tmp_path: Path) -> None:
    """A descriptor mtcp cannot bring back (a TCP socket) is refused at checkpoint time by name;
    the process goes on."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        child = start_program(session, [str(c_app), str(tmp_path / "out.txt")],
                              env=preloaded(), pass_fds=(server.fileno(),))
        wait_for_kernel(child.pid)
        where = tmp_path / "snaps"
        res = subprocess.run([tool("opal-checkpoint"), "--mca", "crs", "mtcp", "-w",
                              str(where), str(child.pid)], capture_output=True, text=True,
                             timeout=TOOL_TIMEOUT)
        line = one_line_error(res, "opal-checkpoint")
        assert f"descriptor {server.fileno()} is a IPv4 socket" in line, line
        assert not where.exists() or not list(where.iterdir())
        assert child.popen.poll() is None
        code, _, err = child.finish(TOOL_TIMEOUT)
        assert code == 0, err
    finally:
        server.close()


@pytest.mark.parametrize("mode", ["plain", "forked-fast"])
@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_damaged_image_refused(session: Session, c_app: Path, tmp_path: Path,
                               damage: str, mode: str) -> None:
    child = start_program(session, [str(c_app), str(tmp_path / "out.txt")], env=preloaded())
    wait_for_kernel(child.pid)
    snap = checkpoint(child.pid, tmp_path / "snaps", *MODES[mode])
    child.kill_and_reap()
    pages = snap / "pages.img"
    if damage == "corrupt":
        with open(pages, "r+b") as f:
            f.seek(pages.stat().st_size // 2)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0x40]))
    else:
        os.truncate(pages, pages.stat().st_size // 2)
    res = subprocess.run([tool("opal-restart"), str(snap)], capture_output=True, text=True,
                         timeout=TOOL_TIMEOUT)
    line = one_line_error(res, "opal-restart")
    assert "pages.img" in line and ("corrupted" in line or "truncated" in line), line
    assert not alive(child.pid), "a process runs with the original PID"


def test_image_in_the_restart_area_needs_the_ptrace_restorer(session: Session, c_app: Path,
                                                              tmp_path: Path) -> None:
    """A process that uses the addresses the restart program runs at: one line saying so and
    what to use instead, which then works."""
    out = tmp_path / "out.txt"
    child = start_program(session, [str(c_app), str(out), "high"], env=preloaded())
    wait_for_kernel(child.pid)
    snap = checkpoint(child.pid, tmp_path / "snaps")
    child.kill_and_reap()
    res = subprocess.run([tool("opal-restart"), str(snap)], capture_output=True, text=True,
                         timeout=TOOL_TIMEOUT)
    line = one_line_error(res, "opal-restart")
    assert "inside the address range the restart program runs in" in line, line
    assert "crs_mtcp_restart ptrace" in line, line
    assert not alive(child.pid)
    restart = restore(session, snap, child.pid, str(c_app), *RESTORERS["ptrace"])
    code, _, err = restart.finish(TOOL_TIMEOUT)
    assert code == 0, err


def test_unknown_restorer_refused(session: Session, c_app: Path, tmp_path: Path) -> None:
    child = start_program(session, [str(c_app), str(tmp_path / "out.txt")], env=preloaded())
    wait_for_kernel(child.pid)
    snap = checkpoint(child.pid, tmp_path / "snaps")
    child.kill_and_reap()
    res = subprocess.run([tool("opal-restart"), "--mca", "crs_mtcp_restart", "magic", str(snap)],
                         capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    line = one_line_error(res, "opal-restart")
    assert "crs_mtcp_restart" in line and "'magic'" in line, line
    assert not alive(child.pid)


# ---------------------------------------------------------------------------------------------
# Forked checkpointing and compression

def test_unknown_compression_named(session: Session, c_app: Path, tmp_path: Path) -> None:
    child = start_program(session, [str(c_app), str(tmp_path / "out.txt")], env=preloaded())
    wait_for_kernel(child.pid)
    where = tmp_path / "snaps"
    res = subprocess.run([tool("opal-checkpoint"), "--mca", "crs", "mtcp",
                          *mca_args(("crs_mtcp_compress", "zstd")), "-w", str(where),
                          str(child.pid)], capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    line = one_line_error(res, "opal-checkpoint")
    assert "crs_mtcp_compress" in line and "'zstd'" in line, line
    assert not where.exists() or not list(where.iterdir())
    assert ask(child.pid, {"op": "checkpoint", "dir": str(tmp_path), "compress": "zstd"})[-1] == {
        "event": "error", "message": "unknown compression 'zstd' (none, fast or strong)"}
    assert child.popen.poll() is None


def test_forked_writer_runs_beside_the_application(session: Session, tmp_path: Path) -> None:
    """While the forked child writes the image the application goes on: the file it writes a
    line to per step grew past the position the image recorded, by the time the kernel
    answers, and it was held for a fraction of the time the image took."""
    out = tmp_path / "out.txt"
    child = start_program(session, [sys.executable, str(PY_APP), "100000", str(out), "512",
                                    "load"])
    wait_for_kernel(child.pid)
    time.sleep(0.5)
    image_dir = tmp_path / "image"
    image_dir.mkdir()
    done = ask(child.pid, {"op": "checkpoint", "dir": str(image_dir), "forked": 1})[-1]
    size_at_answer = out.stat().st_size
    assert done["event"] == "done" and done["forked"] == 1, done
    image = json.loads((image_dir / "image.json").read_text())
    (pos,) = [f["pos"] for f in image["fds"] if f.get("path") == str(out)]
    assert size_at_answer > pos, "the application did not run while its image was written"
    assert done["frozen"] < done["total"] / 2, done
    assert (image_dir / "pages.img").stat().st_size == done["raw_bytes"] == done["stored_bytes"]


def test_forked_refuses_a_mapping_a_fork_does_not_copy(session: Session, tmp_path: Path) -> None:
    """A mapping with MADV_DONTFORK would be missing from the forked writer's copy: refused
    by name; an ordinary checkpoint of the same process works."""
    script = ("import mmap, sys, time\n"
              "from crs.plugins import mtcp\n"
              "assert mtcp.load()\n"
              "m = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE)\n"
              "m.madvise(mmap.MADV_DONTFORK)\n"
              "m[:] = b'x' * (1 << 20)\n"
              "print('READY', flush=True)\n"
              "time.sleep(300)\n")
    child = start_program(session, [sys.executable, "-c", script])
    wait_for_kernel(child.pid)
    where = tmp_path / "snaps"
    res = subprocess.run([tool("opal-checkpoint"), "--mca", "crs", "mtcp", *mca_args(FORKED),
                          "-w", str(where), str(child.pid)], capture_output=True, text=True,
                         timeout=TOOL_TIMEOUT)
    line = one_line_error(res, "opal-checkpoint")
    assert "MADV_DONTFORK" in line and "crs_mtcp_forked" in line, line
    assert not where.exists() or not list(where.iterdir())
    checkpoint(child.pid, where)
    assert child.popen.poll() is None


# ---------------------------------------------------------------------------------------------
# The codec (crs/native/lzpack.h), through the blcr cffi module

def lzp_roundtrip(data: bytes, level: int) -> int:
    from crs.plugins.blcr._native import ffi, lib

    cap = lib.blcr_lzp_bound(len(data))
    packed = ffi.new("char[]", cap)
    n = lib.blcr_lzp_compress(data, len(data), packed, cap, level)
    assert n > 0 or not data
    out = ffi.new("char[]", len(data) + 1)
    assert lib.blcr_lzp_decompress(packed, n, out, len(data)) == len(data)
    assert ffi.buffer(out, len(data))[:] == data
    if data:  # one byte of room too few is refused, not overrun
        assert lib.blcr_lzp_decompress(packed, n, out, len(data) - 1) == -74
    return n


def codec_inputs() -> dict[str, bytes]:
    import numpy as np

    rng = np.random.default_rng(5)
    text = (Path(__file__).read_bytes() * 40)[:1 << 20]
    return {"random-floats": rng.random(1 << 17).tobytes(), "zeros": bytes(1 << 20),
            "text": text, "counting": np.arange(1 << 17, dtype=np.uint64).tobytes(),
            "empty": b"", "one": b"x", "short": b"abcabcabcabca", "nine": b"aaaaaaaaa",
            "mixed": rng.random(1 << 15).tobytes() + bytes(1 << 18) + text[:1 << 18]}


@pytest.mark.parametrize("level", [1, 2])
def test_codec_round_trip(level: int) -> None:
    sizes = {name: lzp_roundtrip(data, level) for name, data in codec_inputs().items()}
    assert sizes["zeros"] < 64 and sizes["text"] < (1 << 20) // 4
    assert sizes["random-floats"] <= (1 << 20) + (1 << 20) // 127 + 16


def test_codec_corrupt_input_never_crashes() -> None:
    """Every single-byte change, cut and random block decodes to an error or to some output,
    within the buffer: never a crash (a crash would end this test process)."""
    import numpy as np

    from crs.plugins.blcr._native import ffi, lib

    data = codec_inputs()["mixed"][:1 << 16]
    cap = lib.blcr_lzp_bound(len(data))
    packed = ffi.new("char[]", cap)
    n = lib.blcr_lzp_compress(data, len(data), packed, cap, 2)
    good = bytes(ffi.buffer(packed, n))
    out = ffi.new("char[]", len(data))
    rng = np.random.default_rng(7)
    for i in list(range(min(n, 300))) + list(rng.integers(0, n, 300)):
        bad = bytearray(good)
        bad[i] ^= int(rng.integers(1, 256))
        assert lib.blcr_lzp_decompress(bytes(bad), n, out, len(data)) <= len(data)
    for cut in range(0, n, max(n // 200, 1)):
        assert lib.blcr_lzp_decompress(good[:cut], cut, out, len(data)) <= len(data)
    for _ in range(300):
        noise = rng.bytes(int(rng.integers(1, 4096)))
        assert lib.blcr_lzp_decompress(noise, len(noise), out, len(data)) <= len(data)


def test_frames_damage_named(tmp_path: Path) -> None:
    """The frame reader of a compressed pages.img names the frame that is malformed or
    missing."""
    from crs.plugins.blcr._native import ffi, lib
    from crs.plugins.blcr.memory import MappingError, unpack_pages

    stream = codec_inputs()["mixed"] * 3
    frames = b""
    for off in range(0, len(stream), 1 << 20):
        raw = stream[off:off + (1 << 20)]
        packed = ffi.new("char[]", len(raw))
        n = lib.blcr_lzp_compress(raw, len(raw), packed, len(raw) - 1, 1)
        frames += struct.pack("<II", len(raw), n) + bytes(ffi.buffer(packed, n)) if n else \
            struct.pack("<II", len(raw), 0x80000000 | len(raw)) + raw
    nframes = (len(stream) + (1 << 20) - 1) >> 20

    def unpack(data: bytes) -> bytes:
        src, dst = tmp_path / "frames", tmp_path / "stream"
        src.write_bytes(data)
        with open(src, "rb") as i, open(dst, "w+b") as o:
            unpack_pages(i.fileno(), o.fileno(), len(stream), str(src))
        return dst.read_bytes()

    assert unpack(frames) == stream
    second = 8 + struct.unpack_from("<I", frames, 4)[0] & 0x7FFFFFFF
    with pytest.raises(MappingError, match=r"frames: snapshot file is truncated .*frame 1\)"):
        unpack(frames[:second + 20])
    bad = bytearray(frames)
    bad[second:second + 4] = bytes(4)  # raw_len 0
    with pytest.raises(MappingError, match=r"corrupted \(compressed frame 1 is malformed\)"):
        unpack(bytes(bad))
    with pytest.raises(MappingError, match=rf"corrupted \(compressed frame {nframes} is "):
        unpack(frames + frames[:100])
