"""A SLURM cluster over the emulated nodes: munged and slurmctld on the head node, one slurmd
in every compute node, with a private configuration (``SLURM_CONF``), state, spool and log
directories under the cluster's directory. Debian's packages (22.05) are installed by
``install-slurm.sh`` when missing; no service of the system's is started or used.

Facts this relies on (measured on Debian 12):

* slurmd needs ``/sys/fs/cgroup`` of the host visible in its mount namespace, even with
  ``ProctrackType=proctrack/pgid`` and ``TaskPlugin=task/none`` (the nodes keep the host's /sys);
* its spool directory must exist before it starts;
* munged refuses a key, socket or log directory that others can write to.

Ports are the daemons' own in namespaces of their own, so they clash with nothing on the host.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from .nodes import Cluster, ClusterError, Node

INSTALL = Path(__file__).resolve().parent / "install-slurm.sh"
CTLD_PORT = 16817
SLURMD_PORT = 16818
#: pycrs's default snapc_base_requeue_status: a batch job that exits with it is requeued.
REQUEUE_EXIT = 99
#: The states a job ends in.
END_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
              "OUT_OF_MEMORY")


class SlurmUnavailable(ClusterError):
    """SLURM could not be installed or started here."""


def install(timeout: float = 900) -> float:
    """Install SLURM and munge if missing (apt-get, no service started); returns the seconds
    it took (about 0 when they are there)."""
    t0 = time.monotonic()
    try:
        r = subprocess.run(["sh", str(INSTALL)], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise SlurmUnavailable(f"installing SLURM took more than {timeout:.0f} s") from e
    if r.returncode:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-10:])
        raise SlurmUnavailable(f"installing SLURM failed (exit {r.returncode}):\n{tail}")
    return time.monotonic() - t0


class Slurm:
    """SLURM on ``cluster``: controller on ``cluster.head``, a slurmd per compute node.

    ``env`` is what a client command needs (``SLURM_CONF``); ``run(node, cmd)`` runs a client
    (srun, sbatch, squeue, scontrol...) on a node with it.
    """

    def __init__(self, cluster: Cluster, *, slurmd_timeout: int = 30, cpus: int = 2,
                 requeue_delay: int = 10) -> None:
        if cluster.head is None:
            raise ClusterError("SLURM needs the cluster's head node")
        self.cluster = cluster
        self.dir = cluster.root / "slurm"
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket.2"
        self.slurmd_timeout = slurmd_timeout
        self.cpus = cpus
        self.requeue_delay = requeue_delay
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.procs: list[tuple[Node, subprocess.Popen[bytes]]] = []
        self.timings: dict[str, float] = {}

    # -- set-up ---------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> Slurm:
        t0 = time.monotonic()
        self.timings["install"] = install()
        try:
            self._configure()
            self._start_munge()
            self._start(self.cluster.head,  # type: ignore[arg-type]
                        ["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld")
            for node in self.cluster.nodes:
                self._start(node, ["slurmd", "-D", "-N", node.name, "-f", str(self.conf)],
                            f"slurmd-{node.name}")
            self.wait_nodes_idle(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0 - self.timings["install"]
        return self

    def _configure(self) -> None:
        d = self.dir
        for sub in ("munge", "ctld", "log", *(f"spool/{n.name}" for n in self.cluster.nodes)):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "munge").chmod(0o700)
        key = d / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        head = self.cluster.head
        assert head is not None
        names = ",".join(n.name for n in self.cluster.nodes)
        self.conf.write_text("\n".join([
            "# The emulated cluster's own SLURM (tests/cluster/slurm.py)",
            "ClusterName=pycrs",
            f"SlurmctldHost={head.name}({head.address})",
            f"SlurmctldPort={CTLD_PORT}",
            f"SlurmdPort={SLURMD_PORT}",
            "SrunPortRange=40000-40999",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire is also how long a requeued job waits before it may start again
            # (120 s by default)
            f"AuthInfo=socket={self.munge_socket},cred_expire={self.requeue_delay}",
            f"StateSaveLocation={d / 'ctld'}",
            f"SlurmdSpoolDir={d / 'spool'}/%n",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'spool'}/%n/slurmd.pid",
            f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'log'}/slurmd-%n.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/pgid",
            "TaskPlugin=task/none",
            "SwitchType=switch/none",
            "MpiDefault=none",
            "SchedulerType=sched/builtin",
            # pending jobs (a requeued one whose delay is over) are looked at every 5 s, not 60
            "SchedulerParameters=sched_interval=5",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            f"SlurmdTimeout={self.slurmd_timeout}",
            "SlurmctldTimeout=30",
            "InactiveLimit=0",
            "KillWait=5",
            "MinJobAge=300",
            "MessageTimeout=10",
            "JobRequeue=1",
            # a batch job that exits with this status is put back in the queue, as a site
            # would configure for pycrs's snapc_base_requeue_status
            f"RequeueExit={REQUEUE_EXIT}",
            # one line per job end, requeued attempts included (no accounting database here)
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={d / 'log' / 'jobcomp.txt'}",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            f"NodeName={names} CPUs={self.cpus} RealMemory=1000 State=UNKNOWN",
            f"PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP "
            "OverSubscribe=NO",
            "",
        ]))

    def _start_munge(self) -> None:
        head = self.cluster.head
        assert head is not None
        d = self.dir / "munge"
        self._start(head, ["munged", "-F", "--force", f"--socket={self.munge_socket}",
                           f"--key-file={d / 'munge.key'}", f"--pid-file={d / 'munged.pid'}",
                           f"--seed-file={d / 'munged.seed'}",
                           f"--log-file={self.dir / 'log' / 'munged.log'}"],
                    "munged")
        deadline = time.monotonic() + 10
        while not self.munge_socket.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise SlurmUnavailable("munged did not create its socket in 10 s")
            time.sleep(0.02)

    def _start(self, node: Node, cmd: list[str], name: str) -> None:
        log = open(self.dir / "log" / f"{name}.out", "wb")
        try:
            proc = subprocess.Popen(node.argv(cmd, cwd=self.dir), stdout=log,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        finally:
            log.close()
        proc.name = name  # type: ignore[attr-defined]
        proc.cmd = cmd  # type: ignore[attr-defined]
        self.procs.append((node, proc))
        self.cluster.daemons.add(proc.pid)

    def _check_alive(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is not None:
                name = proc.name  # type: ignore[attr-defined]
                out = (self.dir / "log" / f"{name}.out").read_text(errors="replace")
                logs = sorted((self.dir / "log").glob(f"{name.split('-')[0]}*.log"))
                out += "".join(p.read_text(errors="replace")[-2000:] for p in logs)
                raise SlurmUnavailable(f"{name} exited with {proc.returncode}:\n{out[-3000:]}")

    # -- use ------------------------------------------------------------------------------
    def run(self, node: Node | None, cmd: list[str], *, timeout: float = 120,
            **kw: object) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client (or anything) on ``node`` (default: the head node) with this
        cluster's SLURM_CONF."""
        node = node or self.cluster.head
        assert node is not None
        kw.setdefault("env", self.env)
        return node.run(cmd, timeout=timeout, **kw)

    def node_states(self) -> dict[str, str]:
        r = self.run(None, ["sinfo", "-h", "-N", "-o", "%N %T"], timeout=20)
        return dict(line.split() for line in r.stdout.splitlines() if line.strip())

    def wait_nodes_idle(self, timeout: float = 60) -> None:
        """Wait until every slurmd has registered and every node is idle (bounded)."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                states = self.node_states()
            except subprocess.TimeoutExpired:
                states = {}
            if len(states) == len(self.cluster.nodes) and all(s == "idle" for s in states.values()):
                return
            time.sleep(0.2)
        raise SlurmUnavailable(f"nodes not idle after {timeout:.0f} s: {states}")

    def wait_job(self, jobid: str, states: tuple[str, ...] = END_STATES,
                 timeout: float = 60) -> str:
        """Wait (bounded) until job ``jobid`` is in one of ``states``; returns the state."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job_state(jobid)
            if state in states:
                return state
            time.sleep(0.2)
        raise TimeoutError(f"job {jobid} still {state or 'unknown'} after {timeout:.0f} s")

    def job_state(self, jobid: str) -> str:
        return self.job(jobid).get("JobState", "")

    def job(self, jobid: str) -> dict[str, str]:
        """SLURM's record of job ``jobid`` (``scontrol show job``: JobState, Restarts,
        ExitCode, NodeList, BatchHost...); empty once SLURM has forgotten the job."""
        r = self.run(None, ["scontrol", "-o", "show", "job", jobid], timeout=20)
        return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", r.stdout))

    def attempts(self, jobid: str) -> list[dict[str, str]]:
        """SLURM's record of every attempt of job ``jobid`` that has ended, oldest first
        (jobcomp/filetxt writes one line at each end, a requeued attempt's included):
        JobState, ExitCode, NodeList, StartTime..."""
        path = self.dir / "log" / "jobcomp.txt"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        records = [dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line)) for line in lines]
        return [r for r in records if r.get("JobId") == jobid]

    def sbatch(self, script: str, *options: str, node: Node | None = None,
               cwd: str | os.PathLike[str] | None = None) -> str:
        """Submit ``script`` (text) with ``options``; returns the job id."""
        path = self.dir / f"job-{secrets.token_hex(4)}.sh"
        path.write_text(script)
        return self.submit(path, *options, node=node, cwd=cwd)

    def submit(self, path: str | os.PathLike[str], *options: str, args: tuple[str, ...] = (),
               node: Node | None = None, cwd: str | os.PathLike[str] | None = None,
               env: dict[str, str] | None = None) -> str:
        """``sbatch OPTIONS PATH ARGS`` (the batch script file ``path`` as it is) in ``cwd``,
        with ``env`` (default: this cluster's client environment), which the job inherits;
        returns the job id."""
        r = self.run(node, ["sbatch", "--parsable", *options, str(path), *args], timeout=30,
                     cwd=cwd or self.dir, env=env or self.env)
        if r.returncode:
            raise AssertionError(f"sbatch failed: {r.stderr}")
        return r.stdout.strip().split(";")[0]

    def reset(self, timeout: float = 60) -> None:
        """Back to an idle SLURM after a test: every job cancelled, every daemon that a test
        killed (with its node) started again, every node idle."""
        self.run(None, ["scancel", "--full", "--user", "root"], timeout=20)
        for i, (node, proc) in enumerate(self.procs):
            if proc.poll() is not None:
                self.cluster.daemons.discard(proc.pid)
                name, cmd = proc.name, proc.cmd  # type: ignore[attr-defined]
                self._start(node, cmd, name)
                self.procs[i] = self.procs.pop()
        deadline = time.monotonic() + timeout
        while True:
            states = self.node_states()
            if all(s == "idle" for s in states.values()):
                return
            down = [n for n, s in states.items() if s.startswith("down") or s.startswith("drain")]
            if down:
                self.run(None, ["scontrol", "update", f"NodeName={','.join(down)}", "State=RESUME"],
                         timeout=20)
            if time.monotonic() > deadline:
                raise SlurmUnavailable(f"nodes not idle after a reset: {states}\n{self.logs()}")
            time.sleep(0.5)

    # -- teardown -------------------------------------------------------------------------
    def stop(self, timeout: float = 10) -> None:
        """SIGKILL the daemons (and whatever jobs they ran: the cluster's teardown kills every
        process left in the nodes)."""
        t0 = time.monotonic()
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
        for _, proc in self.procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        self.timings["stop"] = time.monotonic() - t0

    def logs(self) -> str:
        """The tail of every daemon log (for a failing test's message)."""
        out = []
        for p in sorted((self.dir / "log").glob("*")):
            out.append(f"== {p.name}\n" + p.read_text(errors="replace")[-1500:])
        return "\n".join(out)


def available() -> str | None:
    """None when SLURM can be installed/used here, else why not."""
    if os.geteuid() != 0:
        return "SLURM on the emulated cluster needs root"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None
