"""The global coordinator of a C/R job: lives in our ``mpirun`` (Open MPI's SnapC "global" role).

It listens on two endpoints: a private Unix socket named by the JOBID (its PID) for the user's
tools (``ompi-checkpoint``), and a TCP socket with a per-job secret for the ranks' application
coordinators. Checkpoint requests are served one at a time, in arrival order:

    prepare -> every rank says how it can be saved (a checkpoint callback registered; the
               image component of its MPI layer); the coordinator picks one way for all
               (``snapc.method``) or fails the request at once
    begin   -> the method; every rank reports its safe-point count c (under the MPI layer: 0,
               once the ranks are at a consistent cut and MPI is torn down)
    target  -> T = max(c) + 1 is sent to every rank; each saves itself at its safe point T
    saved   <- every rank reports its outcome (they also agree among themselves over mpi4py)
    commit  -> the sequence directory is renamed into place and ``Finished Seq`` recorded
    committed -> every rank goes on (or ends, or stops)

A rank that fails or dies, or a job that ends, fails that checkpoint cleanly: its partial
directory is removed and the earlier sequences stay as they were.

In a transparent checkpoint (the ranks run under the MPI layer, ``--mca crs blcr``) a rank is
saved from outside by a child of its own, and its image must hold no network socket: after
``target`` it sends ``detach`` and closes its connection, which is then not a death; it comes
back on a new connection (``hello`` with ``resume``), which takes the place of the old one in
the same link, and reports ``saved``. Messages for a detached rank wait in its link. A detached
rank whose process is gone, or that is not back within ``snapc_base_detach_timeout``, fails
the checkpoint.
"""
from __future__ import annotations

import os
import queue
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crs import endpoint
from crs.params import Params
from crs.snapshot import SnapshotError

from . import jobenv, method
from .period import Period
from .storage import GlobalSnapshotWriter, global_snapshot_name

#: what the ranks are asked for, at safe points (False) or as images (True)
TOWARDS = {False: "their safe point", True: "a consistent cut"}


class CheckpointFailed(Exception):
    """A coordinated checkpoint did not complete; the message says which rank and why."""


class JobEnded(CheckpointFailed):
    """The job ended (its program finished) before or during the checkpoint."""


def merge_failures(messages: list[str]) -> str:
    """The ranks' failures in one line; ranks that failed for the same reason are named once
    together ("ranks 0, 2: why")."""
    import re

    reasons: dict[str, list[str]] = {}
    for message in messages:
        m = re.fullmatch(r"rank (\d+): (.*)", message, re.S)
        rank, why = (m.group(1), m.group(2)) if m else ("", message)
        reasons.setdefault(why, []).append(rank)
    parts = []
    for why, ranks in reasons.items():
        named = [r for r in ranks if r]
        if not named:
            parts.append(why)
        else:
            parts.append(f"rank{'s' if len(named) > 1 else ''} {', '.join(named)}: {why}")
    return "; ".join(parts)


def dead_ranks(links: list[RankLink]) -> str:
    """The ranks of ``links`` that died (their connection ended without their goodbye), named
    together. When a rank dies its launcher kills the others within moments, and the order in
    which their connections are seen to close here is not the order in which they died, so none
    is named as the first."""
    dead = [link for link in links if not link.alive and not link.finished]
    if len(dead) == 1:
        return f"rank {dead[0].rank} (PID {dead[0].pid} on {dead[0].host}) died"
    hosts = sorted({link.host for link in dead})
    return (f"ranks {', '.join(str(link.rank) for link in dead)} (PIDs "
            f"{', '.join(str(link.pid) for link in dead)} on {', '.join(hosts)}) died")


def job_socket(jobid: int) -> Path:
    """The tools' endpoint of job ``jobid``."""
    return endpoint.control_dir() / f"mpirun-{jobid}.sock"


def running_jobs() -> Iterator[tuple[int, dict[str, Any]]]:
    """The running checkpoint-enabled jobs of this user, each as (JOBID, what its coordinator
    says of itself: ``GlobalCoordinator.info``)."""
    for sock_path in sorted(endpoint.control_dir().glob("mpirun-*.sock")):
        try:
            jobid = int(sock_path.stem.split("-", 1)[1])
            info = endpoint.request(endpoint.connect(jobid, "job", sock_path), {"op": "ping"},
                                    what=f"job {jobid}")
        except (ValueError, endpoint.EndpointError, OSError):
            continue  # a job that just ended
        yield jobid, info


def pid_here(pid: int, pidns: str, host: str) -> int:
    """The PID here of a rank that reports ``pid`` in PID namespace ``pidns``: the same unless
    it runs on this host in another PID namespace (a rank an ordinary user restored), which is
    then searched for the process with that PID there."""
    try:
        if not pidns or host != socket.gethostname() or os.readlink("/proc/self/ns/pid") == pidns:
            return pid
    except OSError:
        return pid
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/pid") != pidns:
                continue
            status = Path(f"/proc/{entry.name}/status").read_text()
        except OSError:
            continue  # gone, or not ours to look at
        nspid = next((line.split()[1:] for line in status.splitlines()
                      if line.startswith("NSpid:")), [])
        if nspid and nspid[-1] == str(pid):
            return int(entry.name)
    return pid


@dataclass
class RankLink:
    """The coordinator's connection to one rank."""

    rank: int
    size: int
    pid: int  # in the coordinator's PID namespace (signals, whether it is gone)
    host: str
    sock: socket.socket
    own_pid: int = 0  # as the rank sees it (in a PID namespace of its own when restored so)
    alive: bool = True
    finished: bool = False  # the rank's program ended normally
    lock: threading.Lock = field(default_factory=threading.Lock)
    detached: bool = False  # closed its connection on purpose, while its image is taken
    detached_at: float = 0.0
    pending: list[dict[str, Any]] = field(default_factory=list)  # for it while detached

    def __post_init__(self) -> None:
        self.own_pid = self.own_pid or self.pid

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            if self.detached:
                self.pending.append(message)
                return
            endpoint.send(self.sock, message)

    def reattach(self, sock: socket.socket) -> None:
        """The rank is back on a new connection: it replaces the old one, and what was kept
        for the rank meanwhile is sent on it."""
        with self.lock:
            self.sock, self.detached = sock, False
            pending, self.pending = self.pending, []
            for message in pending:
                endpoint.send(sock, message)

    def process_gone(self) -> bool:
        """Whether the rank's process is known to be gone (only knowable on this host)."""
        return self.host == socket.gethostname() and not os.path.exists(f"/proc/{self.pid}")


@dataclass
class Request:
    """A tool's checkpoint request and the events it is waiting for."""

    term: bool = False
    stop: bool = False
    only: str | None = None
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    cancelled: bool = False


class GlobalCoordinator:
    """Serves tools and ranks for one job; see the module docstring for the protocol."""

    def __init__(self, params: Params, job_records: list[tuple[str, str]],
                 snapshot_dir: Path | None = None) -> None:
        self.jobid = os.getpid()
        self.params = params
        self.job_records = job_records
        self.snapshot_dir = snapshot_dir or (
            params.get_path("snapc_base_global_snapshot_dir").absolute()
            / global_snapshot_name(self.jobid))
        self.token = secrets.token_hex(16)
        self.ranks: dict[int, RankLink] = {}
        self.size: int | None = None
        self.registered = threading.Condition()
        self.requests: queue.Queue[Request] = queue.Queue()
        self.period = Period(params)
        #: the sequence this job restarted from: never removed by snapc_base_keep
        self.restarted_from: int | None = None
        # Every rank's messages, in arrival order; None marks a rank whose connection ended.
        self.inbox: queue.Queue[tuple[RankLink, dict[str, Any] | None]] = queue.Queue()
        self.job_ended = threading.Event()
        self.last_seq: int | None = None
        # messages of the running checkpoint that came before the step that reads them
        self._ahead: list[tuple[RankLink, dict[str, Any]]] = []
        self.state = "idle"
        self._writer: GlobalSnapshotWriter | None = None
        #: a rank of a restarted job that could not be restored: (rank, why); the job must end
        self.restore_failure: tuple[int, str] | None = None
        self.restore_failed = threading.Event()
        #: how the job was ended on purpose: a checkpoint on snapc_base_checkpoint_signal ended
        #: it to be requeued, or a signal mpirun passed on to it (snapc.frontend)
        self.requeue = False
        self.passed_on: int | None = None
        self._tool_threads: set[threading.Thread] = set()
        host = params.get("snapc_base_coordinator_address")
        self.rank_listener = socket.create_server((host, 0))
        self.address = f"{host}:{self.rank_listener.getsockname()[1]}"
        self.tool_path = job_socket(self.jobid)
        self.tool_listener = endpoint.listen(self.tool_path)

    def rank_environment(self) -> dict[str, str]:
        """What a rank needs to find its coordinator."""
        return {jobenv.ENV_ADDRESS: self.address, jobenv.ENV_TOKEN: self.token,
                jobenv.ENV_JOBID: str(self.jobid)}

    def start(self) -> None:
        targets = [self._accept_ranks, self._accept_tools, self._work]
        if self.period.enabled:
            targets.append(self._periodic)
        for target in targets:
            threading.Thread(target=target, name=f"pycrs-{target.__name__}", daemon=True).start()

    # -- the job's own checkpoints ------------------------------------------------------------
    def _periodic(self) -> None:
        """Checkpoint the job every snapc_base_period seconds (snapc.period), counted from the
        end of one checkpoint; a request of a tool in between does as well. A failure is said in
        one line on stderr and the job goes on; the next one is tried after the interval."""
        done = time.monotonic()
        while True:
            interval = self.period.interval() or 0.0
            if self.job_ended.wait(max(0.0, done + interval - time.monotonic())):
                return
            if self.state != "idle" or not self.requests.empty():
                done = time.monotonic()  # a tool's checkpoint is under way: it counts as one
                continue
            req = Request()
            started = time.monotonic()
            self.requests.put(req)
            while (event := req.events.get())["event"] not in endpoint.FINAL_EVENTS:
                pass
            done = time.monotonic()
            if event["event"] == "done":
                self.period.measured(done - started)
                if self.params.get_int("snapc_base_verbose") > 0:
                    print(f"mpirun: periodic checkpoint: sequence {event['seq']} took "
                          f"{done - started:.2f} s; {self.period.describe()}", file=sys.stderr,
                          flush=True)
            elif not self.job_ended.is_set() and not event.get("job_ended"):
                print(f"mpirun: periodic checkpoint failed: {event.get('message')}; the job goes "
                      "on", file=sys.stderr, flush=True)

    def close(self) -> None:
        """The job ended: fail what is pending, let the tools hear it, remove the endpoint."""
        self.job_ended.set()
        while True:
            try:
                req = self.requests.get_nowait()
            except queue.Empty:
                break
            req.events.put({"event": "error", "message": "the job ended before the checkpoint "
                            "started"})
        for thread in list(self._tool_threads):
            thread.join(timeout=10)
        for listener in (self.rank_listener, self.tool_listener):
            try:
                listener.close()
            except OSError:
                pass
        try:
            self.tool_path.unlink()
        except OSError:
            pass

    def connections_ended(self, timeout: float = 5.0) -> None:
        """Until every rank's connection has ended (the job is over: their readers see it
        soon), so that the ranks that died are known; ``timeout`` seconds at most."""
        deadline = time.monotonic() + timeout
        while any(link.alive and not link.detached for link in list(self.ranks.values())):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def local_rank_pids(self) -> list[int]:
        me = socket.gethostname()
        return [link.pid for link in self.ranks.values() if link.host == me and link.alive]

    # -- ranks --------------------------------------------------------------------------------
    def _accept_ranks(self) -> None:
        while not self.job_ended.is_set():
            try:
                conn, _ = self.rank_listener.accept()
            except OSError:
                return
            threading.Thread(target=self._rank_reader, args=(conn,), daemon=True).start()

    def _rank_reader(self, conn: socket.socket) -> None:
        stream = endpoint.messages(conn)
        try:
            hello = next(stream, None)
        except (OSError, ValueError):
            hello = None
        if not hello or hello.get("op") != "hello" or not secrets.compare_digest(
                str(hello.get("token", "")), self.token):
            conn.close()
            return
        if "restore_failed" in hello:  # a rank of a restarted job that opal-restart could not
            self.restore_failure = (int(hello["rank"]), str(hello["restore_failed"]))
            self.restore_failed.set()
            conn.close()
            return
        if hello.get("resume"):
            with self.registered:
                link = self.ranks.get(int(hello["rank"]))
            if link is None or link.own_pid != int(hello["pid"]) or not link.alive:
                conn.close()  # not a rank of ours that detached
                return
            link.reattach(conn)
            self.inbox.put((link, {"op": "resumed"}))
        else:
            own = int(hello["pid"])
            link = RankLink(int(hello["rank"]), int(hello["size"]),
                            pid_here(own, str(hello.get("pidns", "")), str(hello["host"])),
                            str(hello["host"]), conn, own_pid=own)
            with self.registered:
                self.ranks[link.rank] = link
                self.size = link.size
                self.registered.notify_all()
        try:
            for message in stream:
                op = message.get("op")
                if op == "bye":
                    link.finished = True
                    continue
                if op == "detach":
                    with link.lock:
                        if link.sock is conn:
                            link.detached, link.detached_at = True, time.monotonic()
                self.inbox.put((link, message))
        except (OSError, ValueError):
            pass
        conn.close()
        with link.lock:
            on_purpose = link.sock is not conn or link.detached  # replaced, or detached
        if on_purpose:
            return
        link.alive = False
        self.inbox.put((link, None))

    def _wait_for_ranks(self, req: Request) -> list[RankLink]:
        timeout = float(self.params.get_int("snapc_base_registration_timeout"))
        deadline = time.monotonic() + timeout
        with self.registered:
            while True:
                if self.job_ended.is_set():
                    raise JobEnded("the job ended before the checkpoint started")
                links = [link for link in self.ranks.values() if link.alive]
                if self.size is not None and len(links) == self.size:
                    return sorted(links, key=lambda link: link.rank)
                if time.monotonic() > deadline:
                    have = len(links)
                    want = self.size if self.size is not None else "?"
                    raise CheckpointFailed(
                        f"only {have} of {want} ranks are running under pycrs after {timeout:g} s "
                        "(are they Python programs started by this mpirun?)")
                req.events.put({"event": "status", "message": "waiting for ranks to register"})
                self.registered.wait(0.5)

    def _gather(self, links: list[RankLink], op: str, seq: int,
                timeout: float = 0, late: str = "") -> list[dict[str, Any]]:
        """One ``op`` message of ``seq`` from every rank, in rank order; the first rank to go
        away (in the order it happened) fails the checkpoint, as do ranks still silent after
        ``timeout`` seconds (if not 0), named before ``late``."""
        deadline = time.monotonic() + timeout if timeout > 0 else None
        got: dict[int, dict[str, Any]] = {}
        for link, message in list(self._ahead):
            if message.get("seq") == seq and message.get("op") == op:
                self._ahead.remove((link, message))
                got[link.rank] = message
        for link in links:
            if not link.alive:
                raise CheckpointFailed(f"rank {link.rank} (PID {link.pid} on {link.host}) is gone")
        detach_timeout = float(self.params.get_int("snapc_base_detach_timeout"))
        while len(got) < len(links):
            for link in links:
                if link.detached and link.rank not in got:
                    if link.process_gone():
                        raise CheckpointFailed(f"rank {link.rank} (PID {link.pid} on "
                                               f"{link.host}) died while its image was taken")
                    if detach_timeout > 0 and time.monotonic() - link.detached_at > detach_timeout:
                        raise CheckpointFailed(
                            f"rank {link.rank} (PID {link.pid} on {link.host}) did not come back "
                            f"within {detach_timeout:g} s after it detached for its image "
                            "(snapc_base_detach_timeout)")
            if deadline is not None and time.monotonic() > deadline:
                silent = [str(link.rank) for link in links if link.rank not in got]
                raise CheckpointFailed(f"rank{'s' if len(silent) > 1 else ''} "
                                       f"{', '.join(silent)} {late}")
            try:
                link, message = self.inbox.get(timeout=0.5)
            except queue.Empty:
                if self.job_ended.is_set():
                    raise JobEnded("the job ended during the checkpoint") from None
                continue
            if message is None and link in links:
                if link.finished:  # it said goodbye: the program ended, it did not die
                    raise JobEnded(f"the job ended during the checkpoint (rank "
                                           f"{link.rank} finished before the agreed safe point)")
                time.sleep(0.5)  # let the connections of ranks that died with it close too
                raise CheckpointFailed(f"{dead_ranks(links)} during the checkpoint")
            if message is not None and message.get("seq") == seq:
                if message.get("op") == op:
                    got[link.rank] = message
                else:  # a rank ahead of the others: its next step's message, for later
                    self._ahead.append((link, message))
        return [got[link.rank] for link in links]

    # -- tools --------------------------------------------------------------------------------
    def _accept_tools(self) -> None:
        while not self.job_ended.is_set():
            try:
                conn, _ = self.tool_listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve_tool, args=(conn,), daemon=True)
            self._tool_threads.add(thread)
            thread.start()

    def info(self) -> dict[str, Any]:
        return {"jobid": self.jobid, "ranks": len(self.ranks), "size": self.size,
                "state": self.state, "snapshot_dir": str(self.snapshot_dir),
                "last_seq": self.last_seq, "restarted_from": self.restarted_from,
                "command": dict(self.job_records).get("Mpirun Command", "")}

    def _serve_tool(self, conn: socket.socket) -> None:
        try:
            self._answer_tool(conn)
        finally:
            self._tool_threads.discard(threading.current_thread())

    def _answer_tool(self, conn: socket.socket) -> None:
        def ping(conn: socket.socket, _message: dict[str, Any]) -> None:
            endpoint.send(conn, {"event": "done", **self.info()})

        endpoint.answer(conn, {"ping": ping, "checkpoint": self._serve_checkpoint})

    def _serve_checkpoint(self, conn: socket.socket, message: dict[str, Any]) -> None:
        req = Request(term=bool(message.get("term")), stop=bool(message.get("stop")),
                      only=message.get("crs") or None)
        ahead = self.requests.qsize() + (self.state != "idle")
        self.requests.put(req)
        endpoint.send(conn, {"event": "queued", "ahead": ahead,
                             "message": f"request queued behind {ahead} other(s)" if ahead
                             else "request accepted"})
        if message.get("nowait"):
            endpoint.send(conn, {"event": "done", "nowait": True})
            return
        while True:
            event = req.events.get()
            try:
                endpoint.send(conn, event)
            except OSError:
                req.cancelled = True  # the tool left; a started checkpoint still completes
                return
            if event["event"] in endpoint.FINAL_EVENTS:
                return

    # -- the checkpoint protocol --------------------------------------------------------------
    def _work(self) -> None:
        while True:
            req = self.requests.get()
            if req.cancelled:
                continue
            try:
                seq = self._checkpoint(req)
            except (CheckpointFailed, SnapshotError, OSError) as exc:
                req.events.put({"event": "error", "message": str(exc),
                                "job_ended": isinstance(exc, JobEnded)})
            except Exception as exc:  # a bug here must not leave the tool waiting forever
                req.events.put({"event": "error", "message": f"internal error in the global "
                                f"coordinator: {type(exc).__name__}: {exc}"})
            else:
                req.events.put({"event": "done", "seq": seq, "snapshot": str(self.snapshot_dir)})
            finally:
                self.state = "idle"

    def _storage(self) -> GlobalSnapshotWriter:
        if self._writer is None:
            self._writer = GlobalSnapshotWriter(self.snapshot_dir, self.job_records,
                                                fsync=self.params.get_bool("crs_base_fsync"))
        return self._writer

    def _checkpoint(self, req: Request) -> int:
        self.state = "waiting for ranks"
        links = self._wait_for_ranks(req)
        writer = self._storage()
        seq = writer.next_seq()
        self._ahead.clear()
        partial = writer.begin(seq)
        self.state = f"checkpointing sequence {seq}"
        committed = False
        try:
            from crs.framework import parse_selection

            matter = method.callbacks_matter(*parse_selection(req.only or self.params.get("crs")))
            for link in links:
                link.send({"op": "prepare", "seq": seq, "crs": req.only,
                           "callbacks_matter": matter})
            how = self._method(req, self._gather(links, "method", seq))
            req.events.put({"event": "status", "message": f"sequence {seq}: asking "
                            f"{len(links)} ranks for {TOWARDS[how != 'self']}",
                            "dir": str(partial)})  # where the tool sees the sequence grow
            for link in links:
                link.send({"op": "begin", "seq": seq, "method": how})
            replies = self._gather(links, "count", seq)
            at = max(m["count"] for m in replies) + 1
            if all("cut" in m for m in replies):  # under the MPI layer: no safe points
                text = (f"sequence {seq}: the ranks are at a consistent cut, MPI torn down; "
                        "saving their images" if all(m["cut"] for m in replies)
                        else f"sequence {seq}: the ranks did not reach a consistent cut")
            else:
                text = f"sequence {seq}: ranks meet at safe point {at}"
            req.events.put({"event": "status", "message": text})
            for link in links:
                link.send({"op": "target", "seq": seq, "at": at, "dir": str(partial),
                           "term": req.term, "stop": req.stop, "crs": req.only})
            if how == "self":  # a safe point may never come: that wait is bounded
                limit = self.params.get_int("crs_base_safe_point_timeout")
                self._gather(links, "reached", seq, limit, f"reached no safe point within "
                             f"{limit} s (crs_base_safe_point_timeout); the job goes on")
            results = self._gather(links, "saved", seq)
            failures = [r["message"] for r in results if not r.get("ok")]
            if failures:
                raise CheckpointFailed(merge_failures(failures))
            req.events.put({"event": "status", "message": f"sequence {seq}: all ranks saved, "
                            "committing"})
            components = sorted({r["component"] for r in results})
            writer.commit(seq, partial, ",".join(components), len(links))
            committed = True
            self.last_seq = seq
            keep = self.params.get_int("snapc_base_keep")
            if keep > 0:
                protect = {seq} | ({self.restarted_from} if self.restarted_from is not None
                                   else set())
                try:
                    writer.prune(keep, protect)
                except (OSError, SnapshotError) as exc:  # the new sequence stands all the same
                    print(f"mpirun: older sequences not removed (snapc_base_keep): {exc}",
                          file=sys.stderr, flush=True)
        finally:
            if not committed:
                writer.abort(partial)
                if writer.remove_if_unused():
                    self._writer = None  # the next request creates it again
            self._tell_ranks(links, seq, committed)
        return seq

    def _method(self, req: Request, replies: list[dict[str, Any]]) -> str:
        """How the ranks are saved this time (snapc.method); fails the request at once, in one
        line, when no way can serve every rank."""
        from crs.framework import component_names, parse_selection

        include, exclude = parse_selection(req.only or self.params.get("crs"))
        unknown = sorted(((include or set()) | exclude) - set(component_names()))
        if unknown:
            raise CheckpointFailed(f"unknown CRS component {', '.join(unknown)} (installed: "
                                   f"{', '.join(component_names())})")
        reports = [method.RankReport(m["rank"], bool(m["callbacks"]), m.get("image"))
                   for m in replies]
        try:
            return method.choose(include, exclude, reports)
        except method.NoMethod as exc:
            raise CheckpointFailed(str(exc)) from None

    def _tell_ranks(self, links: list[RankLink], seq: int, ok: bool) -> None:
        for link in links:
            if not link.alive:
                continue
            try:
                if not ok:
                    link.send({"op": "abort", "seq": seq})  # releases ranks still on their way
                link.send({"op": "committed", "seq": seq, "ok": ok})
            except OSError:
                pass
