"""An emulated cluster on one machine: every node is a set of Linux namespaces.

A node is a long-lived holder process (``sleep infinity`` under ``unshare``) that owns

* a network namespace with one veth interface (``eth0``) plugged into a bridge, and an address
  on a private subnet;
* a UTS namespace with the node's own host name;
* a mount namespace with the node's own ``/etc/hosts`` (every node of the cluster),
  ``/proc/sys/kernel/random/boot_id`` (UCX and friends tell machines apart by it), ``/dev/shm``,
  ``/tmp`` (except the pytest base directory, which stays shared like a home directory on a
  cluster file system) and a node-local disk at ``Cluster.local`` (the same path on every node,
  a different directory behind it).

No PID namespace: hydra's ssh-style launcher enters a node with ``nsenter -t HOLDER``, which
needs the holder's PID as the host sees it, and processes of all nodes share one PID space (so
two ranks on different nodes never share a PID here, unlike on real machines).

The bridge lives in a namespace of its own (the "switch"), not in the host's: nothing of the
host's network changes, two clusters can use the same subnet at the same time, and when the
holders die the whole network goes with them. Every holder gets PR_SET_PDEATHSIG, so it dies
with the process that made it; processes left behind in a node's namespaces by a crashed run are
found through ``/run/pycrs-cluster/*.json`` (see ``cleanup_leftovers``).

Commands enter a node with ``nsenter -t HOLDER -n -u -m`` (``Node.argv``, ``Node.run``,
``Node.popen``). Failures: ``Node.kill`` (SIGKILL every process in the node; its kernel still
answers, so peers see closed connections), ``Node.cut`` / ``Node.heal`` (the switch port goes
down / up: packets vanish, nothing is closed) and ``Node.crash`` (cut, then kill: a machine that
just stops).
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

#: Where clusters record their namespaces, so that a later run can remove what a crashed one left.
REGISTRY = Path("/run/pycrs-cluster")

#: The ssh stand-in (hydra's ``-launcher-exec``); each cluster writes a wrapper naming itself.
SSH = Path(__file__).resolve().parent / "ssh"

#: The switch's bridge (inside the switch namespace, so any name is safe).
BRIDGE = "br0"

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # a preexec_fn: runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ClusterError(RuntimeError):
    """The emulated cluster could not be set up (the message says which step failed)."""


def _ns_ids(pid: int | str) -> tuple[str, str, str] | None:
    """(net, uts, mnt) namespace identities of a process, None if it is gone."""
    try:
        return tuple(os.readlink(f"/proc/{pid}/ns/{k}") for k in ("net", "uts", "mnt"))  # type: ignore[return-value]
    except OSError:
        return None


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def processes_in(ns: tuple[str, str, str]) -> list[int]:
    """Every live process whose net, UTS and mount namespaces are exactly ``ns``."""
    out = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        if _ns_ids(entry.name) == ns:
            try:
                state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                out.append(int(entry.name))
    return out


def _kill_all(ns: tuple[str, str, str], spare: set[int] = frozenset(),  # type: ignore[assignment]
              timeout: float = 10.0) -> list[int]:
    """SIGKILL every process in ``ns`` (except those in ``spare``) until none is left; returns
    what was killed. Bounded: raises ClusterError after ``timeout`` seconds."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in processes_in(ns) if p not in spare]
        if not pids:
            return sorted(killed)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise ClusterError(f"processes survive SIGKILL in {ns}: {pids}")
        time.sleep(0.01)


@dataclass
class Node:
    """One emulated machine. ``address`` is its IPv4 address on the cluster network."""

    cluster: Cluster
    name: str
    address: str
    dir: Path                     # per-node state on the host: boot_id, tmp, local disk
    pid: int = 0                  # the holder; 0 before start
    ns: tuple[str, str, str] = ("", "", "")
    port: str = ""                # the switch-side veth
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    # -- running things in the node ------------------------------------------------------
    def argv(self, cmd: list[str], cwd: str | os.PathLike[str] | None = None) -> list[str]:
        """``cmd`` as a command line that runs it inside this node, in ``cwd`` (default: the
        caller's working directory, which is on the shared file system in these tests)."""
        wd = os.fspath(cwd) if cwd is not None else os.getcwd()
        return ["nsenter", "-t", str(self.pid), "-n", "-u", "-m", f"--wd={wd}", "--",
                *map(str, cmd)]

    def run(self, cmd: list[str], *, timeout: float = 120, check: bool = False,
            cwd: str | os.PathLike[str] | None = None,
            **kw: object) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in this node to completion (text output captured, bounded by ``timeout``)."""
        kw.setdefault("capture_output", True)
        return subprocess.run(self.argv(cmd, cwd), text=True, timeout=timeout, check=check, **kw)  # type: ignore[call-overload]

    def popen(self, cmd: list[str], *, cwd: str | os.PathLike[str] | None = None,
              **kw: object) -> subprocess.Popen[str]:
        """Start ``cmd`` in this node in the background (text mode unless told otherwise)."""
        kw.setdefault("text", True)
        return subprocess.Popen(self.argv(cmd, cwd), **kw)  # type: ignore[call-overload]

    def host_path(self, path: str | os.PathLike[str]) -> Path:
        """Where the host sees ``path`` of this node (its /tmp and local disk are its own)."""
        p = Path(path)
        if p == self.cluster.local or self.cluster.local in p.parents:
            return self.dir / "local" / p.relative_to(self.cluster.local)
        shared = any(s == p or s in p.parents for s in self.cluster.shared)
        if Path("/tmp") in p.parents and not shared:
            return self.dir / "tmp" / p.relative_to("/tmp")
        return p

    def pids(self) -> list[int]:
        """Every process running in this node, except its holder."""
        return [p for p in processes_in(self.ns) if p != self.pid]

    def kill_jobs(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL every process in this node except its holder and the cluster's daemons."""
        return _kill_all(self.ns, spare={self.pid, *self.cluster.daemons}, timeout=timeout)

    # -- failures -----------------------------------------------------------------------
    def kill(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL every process in this node (the holder stays, so the node can be used
        again, as after a reboot). Returns the PIDs killed."""
        return _kill_all(self.ns, spare={self.pid}, timeout=timeout)

    def cut(self) -> None:
        """Pull the node's cable at the switch: its port goes down, packets to and from it
        are lost; no connection is closed."""
        self.cluster.switch_ip("link", "set", self.port, "down")

    def heal(self) -> None:
        """Plug the cable back in."""
        self.cluster.switch_ip("link", "set", self.port, "up")

    def crash(self) -> list[int]:
        """The machine stops: cut first (no FIN or RST gets out), then kill everything."""
        self.cut()
        return self.kill()

    def wipe_local(self) -> None:
        """Lose the node-local disk (what a dead node's disk means to the rest of the job)."""
        import shutil

        local = self.dir / "local"
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir()


#: the repository this test suite belongs to (its .venv holds the programs every node runs)
SOURCE_TREE = Path(__file__).resolve().parents[2]

class Cluster:
    """``n`` compute nodes ``node1``..``nodeN`` and a head node ``head`` on ``subnet``.0/24.

    ``root`` is a directory of the test's own (normally under pytest's base directory, which
    every node shares); ``shared`` lists directories under ``/tmp`` that every node sees (each
    node's ``/tmp`` is otherwise its own).
    """

    def __init__(self, root: Path, n: int = 3, *, subnet: str = "10.213.7",
                 shared: list[Path] | None = None, head: bool = True) -> None:
        self.root = Path(root).absolute()
        self.subnet = subnet
        self.shared = [Path(p).absolute() for p in (shared or [])]
        # every node sees the cluster's own directory, and the source tree with its virtual
        # environments (a CI job may clone the repository under /tmp)
        for needed in (self.root, SOURCE_TREE):
            if Path("/tmp") in needed.parents and not any(s == needed or s in needed.parents
                                                          for s in self.shared):
                self.shared.append(needed)
        self.id = uuid.uuid4().hex[:12]
        names = (["head"] if head else []) + [f"node{i}" for i in range(1, n + 1)]
        hosts = {"head": 10} | {f"node{i}": 10 + i for i in range(1, n + 1)}
        self.all_nodes = [Node(self, name, f"{subnet}.{hosts[name]}", self.root / "nodes" / name)
                          for name in names]
        self.head = self.all_nodes[0] if head else None
        self.nodes = [node for node in self.all_nodes if node.name != "head"]
        self.switch: subprocess.Popen[bytes] | None = None
        self.switch_ns: tuple[str, str, str] | None = None
        self.hosts_file = self.root / "hosts"
        #: ssh for this cluster: ``ssh HOST CMD`` runs CMD in node HOST (hydra's -launcher-exec).
        self.ssh = self.root / "ssh"
        #: The node-local disk: the same path in every node, a different directory behind it.
        self.local = self.root / "local"
        self.registry = REGISTRY / f"{self.id}.json"
        self.started = False
        self.timings: dict[str, float] = {}
        #: Long-lived processes (daemons) that ``reset`` keeps; whoever starts one adds it.
        self.daemons: set[int] = set()

    def __getitem__(self, name: str) -> Node:
        for node in self.all_nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    # -- set-up ---------------------------------------------------------------------------
    def start(self) -> Cluster:
        if os.geteuid() != 0:
            raise ClusterError("an emulated cluster needs root (network, UTS and mount namespaces)")
        t0 = time.monotonic()
        cleanup_leftovers()
        self.root.mkdir(parents=True, exist_ok=True)
        self.local.mkdir(exist_ok=True)
        self.hosts_file.write_text("127.0.0.1\tlocalhost\n"
                                   "::1\tlocalhost ip6-localhost ip6-loopback\n"
                                   + "".join(f"{n.address}\t{n.name}\n" for n in self.all_nodes))
        try:
            self.switch = subprocess.Popen(["unshare", "--net", "--", "sh", "-c",
                                            f"ip link add {BRIDGE} type bridge && "
                                            f"ip link set {BRIDGE} up && echo ready && "
                                            "exec sleep infinity"],
                                           stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                           preexec_fn=_die_with_parent)
            for node in self.all_nodes:
                self._spawn(node)
            self._wait_ready(self.switch, "switch")
            self.switch_ns = _ns_ids(self.switch.pid)
            self._register()
            for node in self.all_nodes:
                self._wait_ready(node.proc, node.name)  # type: ignore[arg-type]
                node.pid = node.proc.pid  # type: ignore[union-attr]
                ns = _ns_ids(node.pid)
                if ns is None:
                    raise ClusterError(f"{node.name}: holder died")
                node.ns = ns
                (node.dir / "pid").write_text(f"{node.pid}\n")
                self._register()
            self._wire()
            self.ssh.write_text(f"#!/bin/sh\nPYCRS_CLUSTER_DIR={self.root} exec {SSH} \"$@\"\n")
            self.ssh.chmod(0o755)
            self.started = True
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0
        return self

    def _spawn(self, node: Node) -> None:
        d = node.dir
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        (d / "local").mkdir(exist_ok=True)
        (d / "boot_id").write_text(str(uuid.uuid4()) + "\n")
        script = [
            "set -e",
            f"hostname {node.name}",
            f"mount --bind {self.hosts_file} /etc/hosts",
            f"mount --bind {d / 'boot_id'} /proc/sys/kernel/random/boot_id",
            "mount -t tmpfs -o mode=1777,size=2g tmpfs /dev/shm",
        ]
        # A private /tmp in which the shared directories are bound back at their own paths.
        for shared in self.shared:
            try:
                rel = shared.relative_to("/tmp")
            except ValueError:
                continue
            script += [f"mkdir -p {d / 'tmp' / rel}", f"mount --bind {shared} {d / 'tmp' / rel}"]
        script += [f"mount --rbind {d / 'tmp'} /tmp",
                   # last, so that it is seen through the /tmp just made, if it is under /tmp
                   f"mount --bind {d / 'local'} {self.local}",
                   "ip link set lo up", "echo ready",
                   "exec sleep infinity"]
        node.proc = subprocess.Popen(
            ["unshare", "--net", "--uts", "--mount", "--propagation", "private", "--",
             "sh", "-c", "\n".join(script)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    @staticmethod
    def _wait_ready(proc: subprocess.Popen[bytes], what: str, timeout: float = 10.0) -> None:
        import select

        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            raise ClusterError(f"{what}: namespace set-up failed (exit {proc.poll()})")

    def switch_ip(self, *args: str) -> None:
        """Run ``ip ARGS`` in the switch namespace."""
        assert self.switch is not None
        r = subprocess.run(["nsenter", "-t", str(self.switch.pid), "-n", "ip", *args],
                           capture_output=True, text=True, timeout=10)
        if r.returncode:
            raise ClusterError(f"ip {' '.join(args)} (switch): {r.stderr.strip()}")

    def _wire(self) -> None:
        """One veth pair per node: ``eth0`` in the node, its peer on the switch's bridge."""
        assert self.switch is not None
        batch = []
        for node in self.all_nodes:
            node.port = f"p-{node.name}"[:15]
            batch += [f"link add {node.port} type veth peer name eth0 netns {node.pid}",
                      f"link set {node.port} master {BRIDGE} up"]
        self._ip_batch(self.switch.pid, batch, "switch")
        for node in self.all_nodes:
            self._ip_batch(node.pid, [f"addr add {node.address}/24 dev eth0", "link set eth0 up"],
                           node.name)

    @staticmethod
    def _ip_batch(pid: int, lines: list[str], what: str) -> None:
        r = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-batch", "-"],
                           input="\n".join(lines) + "\n", capture_output=True, text=True,
                           timeout=10)
        if r.returncode:
            raise ClusterError(f"{what}: ip failed: {r.stderr.strip()}")

    def _register(self) -> None:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        namespaces = [self.switch_ns, *(n.ns for n in self.all_nodes if n.pid)]
        entry = {"owner": os.getpid(), "owner_start": _start_time(os.getpid()),
                 "root": str(self.root),
                 "namespaces": [list(ns) for ns in namespaces
                                if ns],
                 "holders": [p.pid for p in [self.switch, *(n.proc for n in self.all_nodes)] if p]}
        tmp = self.registry.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry))
        tmp.rename(self.registry)

    # -- teardown --------------------------------------------------------------------------
    def stop(self, timeout: float = 15.0) -> None:
        """Kill every process in every node, then the holders (which takes the namespaces,
        the veths and the bridge with them). Safe to call twice, and after a failed start."""
        t0 = time.monotonic()
        errors = []
        for node in self.all_nodes:
            if node.pid:
                try:
                    _kill_all(node.ns, timeout=timeout)
                except ClusterError as e:
                    errors.append(str(e))
        for proc in [*(n.proc for n in self.all_nodes), self.switch]:
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    errors.append(f"holder {proc.pid} does not die")
                if proc.stdout:
                    proc.stdout.close()
        if not errors:
            self.registry.unlink(missing_ok=True)
        self.started = False
        self.timings["stop"] = time.monotonic() - t0
        if errors:
            raise ClusterError("; ".join(errors))

    def reset(self) -> None:
        """Back to a healthy cluster after a test: every link up, every process a test left
        in a node killed (the holders and ``daemons`` stay)."""
        if self.switch is not None:
            ports = [n.port for n in self.all_nodes if n.port]
            self._ip_batch(self.switch.pid, [f"link set {p} up" for p in ports], "switch")
        for node in self.all_nodes:
            node.kill_jobs()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what jobs need --------------------------------------------------------------------
    def hostfile(self, ppn: int = 1, nodes: list[Node] | None = None) -> Path:
        """A hydra host file listing ``nodes`` (default: the compute nodes), ``ppn`` slots each."""
        nodes = nodes or self.nodes
        path = self.root / f"hostfile-{'-'.join(n.name for n in nodes)}-{ppn}"
        path.write_text("".join(f"{n.name}:{ppn}\n" for n in nodes))
        return path

    def hydra_env(self, ppn: int = 1, nodes: list[Node] | None = None) -> dict[str, str]:
        """Environment that makes hydra launch over ``nodes`` with ``ppn`` slots each, without
        any option on its command line (so it reaches the hydra behind any front-end, and
        ``ompi-restart --hostfile`` still overrides the host file)."""
        return {"HYDRA_LAUNCHER": "ssh", "HYDRA_LAUNCHER_EXEC": str(self.ssh),
                "HYDRA_HOST_FILE": str(self.hostfile(ppn, nodes))}

    def hydra_args(self, ppn: int = 1, nodes: list[Node] | None = None) -> list[str]:
        """mpiexec (hydra) options that launch over ``nodes`` with ``ppn`` ranks each; add
        ``-n`` and the program."""
        return ["-launcher", "ssh", "-launcher-exec", str(self.ssh),
                "-f", str(self.hostfile(ppn, nodes))]


def cleanup_leftovers() -> list[str]:
    """Remove what crashed earlier runs left: every process in the namespaces of a registered
    cluster whose owner is gone (the namespaces, veths and bridges then vanish with them).
    Returns one line per cluster cleaned."""
    done = []
    if not REGISTRY.is_dir():
        return done
    for entry_path in REGISTRY.glob("*.json"):
        try:
            entry = json.loads(entry_path.read_text())
        except (OSError, ValueError):
            entry_path.unlink(missing_ok=True)
            continue
        owner = int(entry.get("owner", 0))
        if owner and _start_time(owner) == entry.get("owner_start"):
            continue  # its owner is alive: a cluster in use, maybe by another test run
        killed = 0
        for holder in entry.get("holders", []):
            # Only holders that are still in a registered namespace (a PID may be reused).
            ns = _ns_ids(holder)
            if ns is not None and list(ns) in entry.get("namespaces", []):
                try:
                    os.kill(holder, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
        for ns in entry.get("namespaces", []):
            killed += len(_kill_all(tuple(ns)))  # type: ignore[arg-type]
        entry_path.unlink(missing_ok=True)
        done.append(f"cluster {entry_path.stem} ({entry.get('root')}): {killed} processes killed")
    return done
