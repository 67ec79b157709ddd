"""The emulated cluster (tests/cluster/) works: real MPI jobs span its nodes under hydra and
under SLURM, and its failures (a killed node, a cut link) do to a job what they do on real
machines. Root only (namespaces); SLURM is installed with apt-get the first time.

The tests marked ``cluster_long`` (a link cut or a node crashed, each waiting out a silence; the
warning signal and requeue; sbatch with ``mpiexec -launcher slurm``) are deselected by default
(pyproject.toml) and run by ``make test-long``."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.nodes import Cluster
from cluster.slurm import Slurm

BIN = Path(sys.executable).parent
RANKS = Path(__file__).resolve().parent / "cluster" / "ranks.py"
MPIEXEC = str(BIN / "mpiexec.hydra")

pytest_plugins = ["cluster.fixtures"]  # the cluster, cluster_module, slurm, slurm_module fixtures


def reports(stdout: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1].get("sum") is not None, stdout
    return lines


def check_placement(c: Cluster, stdout: str, ppn: int) -> None:
    """Every rank ran on the node it was placed on, with that node's address, boot id and
    interface; the ranks' allreduce went through."""
    lines = reports(stdout)
    ranks, total = lines[:-1], lines[-1]["sum"]
    n = len(c.nodes) * ppn
    assert [r["rank"] for r in ranks] == list(range(n))
    assert total == n * (n - 1) // 2
    by_name = {node.name: node for node in c.nodes}
    assert sorted(r["host"] for r in ranks) == sorted(name for name in by_name for _ in range(ppn))
    for r in ranks:
        node = by_name[r["host"]]  # type: ignore[index]
        assert r["address"] == node.address, r
        assert r["source"] == node.address, r  # its traffic leaves through its own eth0
    boot_ids = {r["host"]: r["boot_id"] for r in ranks}
    assert len(set(boot_ids.values())) == len(c.nodes)  # every node is a machine of its own


def hydra(c: Cluster, ppn: int, *args: str) -> list[str]:
    return [MPIEXEC, *c.hydra_args(ppn), "-n", str(len(c.nodes) * ppn), *args]


# -- the nodes --------------------------------------------------------------------------------
def test_nodes_are_distinct_machines(cluster: Cluster) -> None:
    seen = {}
    for node in cluster.all_nodes:
        r = node.run(["sh", "-c", "hostname; cat /proc/sys/kernel/random/boot_id; "
                      "ip -4 -o addr show dev eth0; getent hosts head node1"], timeout=20)
        assert r.returncode == 0, r.stderr
        host, boot_id, addr, *hosts = r.stdout.splitlines()
        assert host == node.name
        assert f"inet {node.address}/24" in addr
        assert hosts[0].split() == [cluster["head"].address, "head"]
        seen[boot_id] = node.name
    assert len(seen) == len(cluster.all_nodes)
    host_boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert host_boot_id not in seen


def test_node_private_tmp_and_local_disk(cluster: Cluster, tmp_path: Path) -> None:
    """/tmp and the node-local disk are each node's own; the pytest directories stay shared."""
    n1, n2 = cluster.nodes[:2]
    r = n1.run(["sh", "-c", f"echo one > /tmp/mine && echo one > {cluster.local}/mine"])
    assert r.returncode == 0, r.stderr
    for path in ("/tmp/mine", f"{cluster.local}/mine"):
        r = n2.run(["cat", path])
        assert r.returncode != 0 and "No such file" in r.stderr, path
        assert n1.run(["cat", path]).stdout == "one\n"
    assert (n1.dir / "local" / "mine").read_text() == "one\n"
    assert not (cluster.local / "mine").exists()
    assert not Path("/tmp/mine").exists()
    assert n2.run(["sh", "-c", f"echo two > {tmp_path}/shared"]).returncode == 0
    assert (tmp_path / "shared").read_text() == "two\n"
    n1.run(["rm", "-f", "/tmp/mine"])


def test_nodes_reach_each_other_by_name(cluster: Cluster) -> None:
    code = ("import socket,sys; s=socket.create_server(('0.0.0.0', 7777)); print('up', flush=True);"
            "c,a=s.accept(); c.sendall(socket.gethostname().encode()); c.close()")
    server = cluster["node3"].popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert server.stdout is not None and server.stdout.readline().strip() == "up"
    r = cluster["node1"].run([sys.executable, "-c",
                              "import socket; s=socket.create_connection(('node3', 7777), "
                              "timeout=10); print(s.recv(100).decode(), s.getsockname()[0])"],
                             timeout=20)
    assert r.stdout.split() == ["node3", cluster["node1"].address], r.stderr
    server.wait(timeout=10)
    # Loopback is each node's own: 127.0.0.1 on node1 does not reach node3's server.
    server = cluster["node3"].popen([sys.executable, "-c", code.replace("0.0.0.0", "127.0.0.1")],
                                    stdout=subprocess.PIPE)
    assert server.stdout is not None and server.stdout.readline().strip() == "up"
    r = cluster["node1"].run([sys.executable, "-c",
                              "import socket; socket.create_connection(('127.0.0.1', "
                              "7777), timeout=5)"], timeout=20)
    assert "ConnectionRefusedError" in r.stderr
    server.kill()


# -- hydra ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ppn", [1, 2])
def test_hydra_job_across_nodes(cluster: Cluster, ppn: int) -> None:
    r = cluster["node1"].run(hydra(cluster, ppn, sys.executable, str(RANKS), "report"), timeout=120)
    assert r.returncode == 0, r.stderr
    check_placement(cluster, r.stdout, ppn)


def test_hydra_from_the_head_node(cluster: Cluster) -> None:
    """mpiexec on a node that runs no rank (a login node)."""
    r = cluster["head"].run(hydra(cluster, 1, sys.executable, str(RANKS), "report"), timeout=120)
    assert r.returncode == 0, r.stderr
    check_placement(cluster, r.stdout, 1)


def test_ucx_sees_nodes_apart(cluster: Cluster) -> None:
    """UCX sends between nodes over TCP on eth0 (between ranks of one node through shared
    memory): it does not take the nodes for one machine (each node has its own boot id)."""
    env = dict(os.environ, UCX_PROTO_INFO="y")
    r = cluster["node1"].run(hydra(cluster, 2, sys.executable, str(RANKS), "report"), timeout=120,
                             env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    inter = [line for line in out.splitlines() if "inter-node" in line]
    assert inter, out[-3000:]
    assert "tcp/eth0" in out
    assert "intra-node" in out  # the two ranks of a node


def start_loop(c: Cluster, node: str, seconds: float) -> subprocess.Popen[str]:
    """A 3-node hydra job that runs ``seconds``; returned once it computes."""
    job = c[node].popen(hydra(c, 1, sys.executable, str(RANKS), "loop", str(seconds)),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    line = read_line(job, 60)
    assert line.startswith("tick"), (line, job.poll())
    return job


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line of ``proc``'s output, or '' when none comes within ``timeout``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""


def test_hydra_job_aborts_when_a_node_dies(cluster: Cluster) -> None:
    """Every process of node3 killed: its proxy's connection closes, mpiexec aborts the whole
    job at once and every rank on the other nodes is gone."""
    job = start_loop(cluster, "node1", 120)
    t0 = time.monotonic()
    killed = cluster["node3"].kill()
    assert killed
    try:
        job.wait(timeout=30)
    finally:
        job.kill()
    elapsed = time.monotonic() - t0
    assert job.returncode != 0
    assert "assert (!closed) failed" in job.stderr.read()  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while any(n.pids() for n in cluster.nodes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(n.pids() for n in cluster.nodes)
    print(f"hydra aborted the job {elapsed * 1000:.0f} ms after node3 was killed")


@pytest.mark.cluster_long
def test_partition_hangs_the_job_until_healed(cluster: Cluster) -> None:
    """A cut link closes nothing: the job stops progressing without any error (nothing in
    hydra or UCX notices within the wait), and goes on when the link is back."""
    job = start_loop(cluster, "node1", 12)
    try:
        cluster["node3"].cut()
        cut_at = time.monotonic()
        while read_line(job, 0.5).startswith("tick"):  # what was in flight
            assert time.monotonic() - cut_at < 5
        silent = read_line(job, 8)
        assert silent == "" and job.poll() is None, (silent, job.poll())
        cluster["node3"].heal()
        line = read_line(job, 30)
        assert line.startswith("tick") or line == "done", line
        job.wait(timeout=60)
        assert job.returncode == 0, job.stderr.read()  # type: ignore[union-attr]
    finally:
        job.kill()


@pytest.mark.cluster_long
def test_crashed_node_hangs_the_job(cluster: Cluster) -> None:
    """A node that stops dead (cut, then killed, so no FIN or RST gets out): nothing detects it
    within the wait; the job hangs, and only the test's kill ends it."""
    job = start_loop(cluster, "node1", 120)
    try:
        cluster["node3"].crash()
        while read_line(job, 0.5).startswith("tick"):
            pass
        assert read_line(job, 10) == "" and job.poll() is None
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=10)


# -- SLURM ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ppn", [1, 2])
def test_srun_pmi2_job(slurm: Slurm, ppn: int) -> None:
    c = slurm.cluster
    n = len(c.nodes) * ppn
    r = slurm.run(c.head, ["srun", "-N", str(len(c.nodes)), "-n", str(n), "--mpi=pmi2",
                           sys.executable, str(RANKS), "report"], timeout=120)
    assert r.returncode == 0, r.stderr + slurm.logs()
    check_placement(c, r.stdout, ppn)


def test_srun_hostname(slurm: Slurm) -> None:
    c = slurm.cluster
    r = slurm.run(c["node2"], ["srun", "-N", str(len(c.nodes)), "hostname"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == [n.name for n in c.nodes]


@pytest.mark.parametrize("launch", ["srun --mpi=pmi2",
                                    pytest.param("mpiexec -launcher slurm",
                                                 marks=pytest.mark.cluster_long)])
def test_sbatch_job(slurm: Slurm, tmp_path: Path, launch: str) -> None:
    c = slurm.cluster
    ppn = 2
    launcher = ("srun --mpi=pmi2" if launch.startswith("srun")
                else f"{MPIEXEC} -launcher slurm -n {len(c.nodes) * ppn}")
    out = tmp_path / "job.out"
    jobid = slurm.sbatch(f"#!/bin/sh\nexec {launcher} {sys.executable} {RANKS} report\n",
                         "-N", str(len(c.nodes)), f"--ntasks-per-node={ppn}", f"--output={out}",
                         "--time=5")
    state = slurm.wait_job(jobid, timeout=120)
    text = out.read_text() if out.exists() else ""
    assert state == "COMPLETED", text + slurm.logs()
    check_placement(c, text, ppn)


@pytest.mark.cluster_long
def test_sbatch_warning_signal_and_requeue(slurm: Slurm, tmp_path: Path) -> None:
    """``--signal=B:USR1@T`` reaches the batch script T seconds before its time limit (SLURM
    checks every 30 s or so, so it may come late); ``scontrol requeue`` runs it again, with
    SLURM_RESTART_COUNT counting (once the hold SLURM puts on requeued jobs is lifted)."""
    log = tmp_path / "events"
    script = f"""#!/bin/bash
echo "start ${{SLURM_RESTART_COUNT:-0}} $(date +%s)" >> {log}
trap 'echo "usr1 ${{SLURM_RESTART_COUNT:-0}} $(date +%s)" >> {log}; exit 0' USR1
for i in $(seq 600); do sleep 0.2; done
"""
    jobid = slurm.sbatch(script, "-N", "1", "--time=1", "--signal=B:USR1@55",
                         f"--output={tmp_path}/out", "--requeue")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and "usr1 0" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.5)
    events = log.read_text().split("\n") if log.exists() else []
    assert any(e.startswith("usr1 0") for e in events), (events, slurm.logs())
    start, usr1 = (int(e.split()[2]) for e in events[:2])
    assert usr1 - start < 60  # before the 60 s limit
    slurm.wait_job(jobid, timeout=30)
    r = slurm.run(None, ["scontrol", "requeue", jobid], timeout=20)
    assert r.returncode == 0, r.stderr
    # A requeued job waits (Reason=BeginTime) for AuthInfo's cred_expire (10 s in this cluster,
    # 120 s by default) before it may start again; the test does not wait that long.
    r = slurm.run(None, ["scontrol", "update", f"JobId={jobid}", "StartTime=now"], timeout=20)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "start 1" not in log.read_text():
        time.sleep(0.5)
    assert "start 1" in log.read_text(), (log.read_text(), slurm.job_state(jobid))
