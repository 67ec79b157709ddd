#!/usr/bin/env python
"""Rank helper of the split process (candidate (b) of issue 6).

    mpiexec -n N python helper.py -- APP.py ARGS...           # start a job
    mpiexec -n N python helper.py --restart DIR               # restart it from checkpoint DIR

Each MPI rank is this process: it holds the real MPI library (mpi4py) and starts the application
as its child, with the shim (shim/mpi4py) first on its PYTHONPATH, one memfd as the channel
(channel.py), stdin /dev/null and no other descriptor. Every MPI call of the application is a
request in the channel; the helper serves it with nonblocking MPI so that it always stays
responsive (receives are matched with improbe in post order, collectives are the MPI-3
nonblocking ones, Split/Dup are entered after an Ibarrier).

Checkpoint (request: write "ID term|cont" to $SPLIT_CKPT_DIR/request):
  cut     control rounds (Iallgather on a private communicator) of each helper's per-communicator
          collective counts; a helper admits a collective only while it is behind the maximum,
          until every count is equal and no collective is in progress (a fixed point);
  drain   no more requests admitted; the helpers exchange how many messages each sent to each
          peer per communicator and receive (improbe) what they have not yet received into a
          buffer; sends in flight complete;
  save    the helper state (communicator creation log, buffered messages, requests) goes to
          DIR/rank_R.state, then `opal-checkpoint --mca crs blcr` saves the application process.
At restart the new helpers replay Split/Dup, restore the application with `opal-restart --detach`,
open its memfd through /proc/PID/fd, and serve again: buffered messages are matched first, the
request the application was blocked in (if any) is still in the channel and is served anew.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
from mpi4py import MPI

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import channel  # noqa: E402
from channel import DATA_CAP, REQ_SEQ, RESP_SEQ  # noqa: E402

ANY_SOURCE, ANY_TAG, UNDEFINED, PROC_NULL = -1001, -1002, -1003, -1004
OPS = {"SUM": MPI.SUM, "PROD": MPI.PROD, "MAX": MPI.MAX, "MIN": MPI.MIN, "LAND": MPI.LAND,
       "LOR": MPI.LOR, "BAND": MPI.BAND, "BOR": MPI.BOR}
COLLECTIVES = {"barrier", "bcast", "allgather", "Allreduce", "Bcast", "split", "dup", "free"}
HELPER_SPIN = int(os.environ.get("SPLIT_HELPER_SPIN", "0"))
# polling for the app (a receive, a collective), yield the core to whoever is runnable: the app of
# this rank has just been woken, or another rank's helper (Open MPI does the same when it is
# oversubscribed: mpi_yield_when_idle); without it a woken app can wait a scheduler slice (~1 ms)
HELPER_YIELD = os.environ.get("SPLIT_HELPER_YIELD", "1") == "1"
VENV_BIN = os.path.dirname(sys.executable)


def msrc(s):
    return MPI.ANY_SOURCE if s == ANY_SOURCE else s


def mtag(t):
    return MPI.ANY_TAG if t == ANY_TAG else t


class SendOp:
    def __init__(self, h, cid, dest, tag, buf):
        self.done = dest == PROC_NULL
        self.result = ("s", dest, tag, 0)
        if not self.done:
            self.req = h.comms[cid].Isend([buf, len(buf), MPI.BYTE], dest, tag)
            self.buf = buf
            key = (cid, h.members[cid][dest])
            h.sent[key] = h.sent.get(key, 0) + 1

    def step(self):
        if not self.done and self.req.Test():
            self.done, self.buf = True, None
        return self.done


class RecvOp:
    """A receive the application posted; matched (improbe, in post order) only when progressed."""

    def __init__(self, h, cid, source, tag, blocking, off=0, cap=0):
        self.h, self.cid, self.source, self.tag, self.blocking = h, cid, source, tag, blocking
        self.off, self.cap = off, cap  # the app's Irecv buffer in the channel (0: none)
        self.state = "waiting"  # -> matched -> done
        self.data = None
        self.inplace = False  # the data is in the channel at off

    def try_match(self):
        h = self.h
        if self.source == PROC_NULL:
            self.state, self.result, self.data = "done", ("r", PROC_NULL, ANY_TAG, 0), b""
            return True
        for i, (c, s, t, b) in enumerate(h.buffered):  # drained at a checkpoint: they come first
            if c == self.cid and self.source in (ANY_SOURCE, s) and self.tag in (ANY_TAG, t):
                del h.buffered[i]
                self.state, self.result, self.data = "done", ("r", s, t, len(b)), b
                if self.blocking:
                    h.ch.data[:len(b)] = b
                elif self.off and len(b) <= self.cap:
                    h.ch.data[self.off:self.off + len(b)] = b
                    self.inplace = True
                return True
        st = MPI.Status()
        msg = h.comms[self.cid].improbe(msrc(self.source), mtag(self.tag), st)
        if msg is None:
            return False
        n, s, t = st.Get_count(MPI.BYTE), st.Get_source(), st.Get_tag()
        key = (self.cid, h.members[self.cid][s])
        h.recvd[key] = h.recvd.get(key, 0) + 1
        if self.blocking:
            buf = h.ch.data[:n]
        elif self.off and n <= self.cap:
            buf, self.inplace = h.ch.data[self.off:self.off + n], True
        else:
            buf = bytearray(n)
        self.req = msg.Irecv([buf, n, MPI.BYTE])
        self.result, self.data, self.state = ("r", s, t, n), buf, "matched"
        self.step()
        return True

    def step(self):
        if self.state == "matched" and self.req.Test():
            self.state = "done"
            self.req = None
        return self.state == "done"

    @property
    def done(self):
        return self.state == "done"


class CtlGather:
    """A nonblocking allgather of one bytes object per helper on the control communicator."""

    def __init__(self, comm, payload: bytes):
        self.comm, self.payload = comm, payload
        self.lens = np.zeros(comm.size, np.int64)
        self.req = comm.Iallgather([np.array([len(payload)], np.int64), MPI.INT64_T],
                                   [self.lens, MPI.INT64_T])
        self.stage, self.result = 0, None

    def done(self):
        if self.stage == 0 and self.req.Test():
            self.out = bytearray(int(self.lens.sum()))
            displs = np.concatenate([[0], np.cumsum(self.lens)[:-1]]).astype(np.int64)
            self.req = self.comm.Iallgatherv([self.payload, MPI.BYTE],
                                             [self.out, (self.lens, displs), MPI.BYTE])
            self.displs = displs
            self.stage = 1
        if self.stage == 1 and self.req.Test():
            self.result = [pickle.loads(self.out[d:d + n]) for d, n in zip(self.displs, self.lens)]
            self.stage = 2
        return self.stage == 2


class Helper:
    def __init__(self, ckdir):
        self.world = MPI.COMM_WORLD
        self.rank, self.size = self.world.rank, self.world.size
        self.ctl = self.world.Dup()
        self.wgroup = self.world.Get_group()
        self.comms, self.members = {}, {}
        self._add("0", self.world.Dup())
        self.log = []  # ("split", parent, color, key, cid) / ("dup", parent, cid) / ("free", cid)
        self.reqs, self.next_rid = {}, 1
        self.buffered = []  # [cid, source (rank in cid), tag, bytes] drained at a checkpoint
        self.sent, self.recvd, self.coll = {}, {}, {}
        self.waiters = []  # RecvOps not yet matched, in post order
        self.active = []  # sends and matched receives in flight
        self.cur = None  # (seq, op, kind) the application is blocked in
        self.ckdir = ckdir
        self.phase, self.done_id, self.next_check = None, None, 0.0
        self.finished = False
        self.libver = MPI.Get_library_version().splitlines()[0].strip()

    def _add(self, cid, comm):
        self.comms[cid] = comm
        self.members[cid] = MPI.Group.Translate_ranks(comm.Get_group(), list(range(comm.size)),
                                                      self.wgroup)

    # -- the application
    def start_app(self, argv):
        fd = channel.create(f"pycrs-split-r{self.rank}")
        self.ch = channel.Channel(fd)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.join(HERE, "shim") + os.pathsep + env.get("PYTHONPATH", "")
        env["SPLIT_FD"] = str(fd)

        def child():
            import ctypes
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        self.proc = subprocess.Popen([sys.executable] + argv, pass_fds=(fd,), env=env,
                                     stdin=subprocess.DEVNULL, preexec_fn=child)
        self.app_pid, self.app_fd = self.proc.pid, fd
        self.last = 0

    def restore_app(self, rdir):
        with open(os.path.join(rdir, f"rank_{self.rank}.state"), "rb") as f:
            st = pickle.load(f)
        t0 = time.perf_counter()
        for e in st["log"]:  # replay the communicators the application made
            if e[0] == "split":
                _, parent, color, key, cid = e
                new = self.comms[parent].Split(MPI.UNDEFINED if color == UNDEFINED else color, key)
                if new != MPI.COMM_NULL:
                    self._add(cid, new)
            elif e[0] == "dup":
                self._add(e[2], self.comms[e[1]].Dup())
            elif e[0] == "free":
                self.comms.pop(e[1]).Free()
        self.log = st["log"]
        self.buffered = st["buffered"]
        self.next_rid = st["next_rid"]
        for rid, r in sorted(st["reqs"].items()):
            if r[0] == "recv":
                op = RecvOp(self, r[1], r[2], r[3], False, r[4], r[5])
                self.waiters.append(op)
            elif r[0] == "sent":
                op = SendOp.__new__(SendOp)
                op.done, op.result = True, r[1]
            else:
                op = RecvOp(self, None, 0, 0, False, r[3])
                op.state, op.result, op.data, op.inplace = "done", r[1], r[2], r[2] is None
            self.reqs[rid] = op
        t1 = time.perf_counter()
        snap = st["snapshot"]
        # stdout/stderr inherited: the restored app's 0-2 become opal-restart's, i.e. ours (it
        # prints the PID it restored on its stdout, which is the job's output)
        out = subprocess.run([os.path.join(VENV_BIN, "opal-restart"), "--detach", snap],
                             stdin=subprocess.DEVNULL)
        t2 = time.perf_counter()
        if out.returncode != 0:
            sys.exit(f"helper {self.rank}: opal-restart failed ({out.returncode})")
        self.app_pid, self.app_fd, self.proc = st["app_pid"], st["app_fd"], None
        fd = os.open(f"/proc/{self.app_pid}/fd/{self.app_fd}", os.O_RDWR)
        self.ch = channel.Channel(fd)
        self.last = self.ch.u32(RESP_SEQ)  # a request after it is the one the app waits in
        self.times = {"replay_s": t1 - t0, "opal_restart_s": t2 - t1}
        if self.rank == 0:
            print(f"[split] rank 0: restored app {self.app_pid}: replay {t1 - t0:.4f} s, "
                  f"opal-restart {t2 - t1:.3f} s", file=sys.stderr, flush=True)

    # -- serving
    def admit(self, meta):
        if self.phase in ("drain", "save"):
            return False
        if self.phase == "cut" and meta[0] in COLLECTIVES:
            cid = meta[1]
            return self.targets is not None and self.coll.get(cid, 0) < self.targets.get(cid, 0)
        return True

    def start(self, seq, meta):
        op = meta[0]
        ch = self.ch
        if op == "send":
            _, cid, dest, tag, n = meta
            self.cur = (seq, SendOp(self, cid, dest, tag, ch.data[:n]), "p2p")
        elif op == "isend":
            _, cid, dest, tag, n, off = meta
            s = SendOp(self, cid, dest, tag, ch.data[off:off + n] if off else bytes(ch.data[:n]))
            rid = self.new_req(s)
            if not s.done:
                self.active.append(s)
            ch.respond(seq, (rid,))
        elif op in ("recv", "irecv"):
            cid, source, tag = meta[1:4]
            r = RecvOp(self, cid, source, tag, op == "recv", *meta[4:])
            self.waiters.append(r)
            if op == "recv":
                self.cur = (seq, r, "p2p")
            else:
                ch.respond(seq, (self.new_req(r),))
        elif op == "wait":
            self.cur = (seq, ("wait", meta[1]), "p2p")
        elif op == "test":
            r = self.reqs[meta[1]]
            ch.respond(seq, self.finish_req(meta[1]) if r.done else (False,))
        elif op in COLLECTIVES:
            cid = meta[1]
            cnt = self.coll.get(cid, 0)
            self.coll[cid] = cnt + 1
            self.cur = (seq, getattr(self, "c_" + op)(cnt, *meta[1:]), "coll")
        elif op == "hello":
            ch.respond(seq, (self.rank, self.size, self.libver))
        elif op == "bye":
            ch.respond(seq, ())
            self.finished = True
        elif op == "abort":
            self.world.Abort(meta[1])
        else:
            raise RuntimeError(f"unknown request {meta!r}")
        if self.cur is not None:
            self.step_cur()

    def new_req(self, op):
        rid = self.next_rid
        self.next_rid += 1
        self.reqs[rid] = op
        return rid

    def finish_req(self, rid):
        op = self.reqs.pop(rid)
        _, s, t, n = op.result
        if isinstance(op, RecvOp):
            if op.inplace:
                return (True, s, t, n, op.off)
            self.ch.data[:n] = op.data
        return (True, s, t, n, 0)

    def step_cur(self):
        seq, op, kind = self.cur
        if kind == "coll":
            try:
                next(op)
                return
            except StopIteration as e:
                res = e.value
        elif isinstance(op, tuple):  # wait on a request
            r = self.reqs[op[1]]
            if not r.done:
                if isinstance(r, SendOp) or r.state == "matched":
                    r.step()
                if not r.done:
                    return
            res = self.finish_req(op[1])
        else:
            if not op.step():
                return
            res = op.result
        self.cur = None
        self.ch.respond(seq, res)

    def progress(self, match=True):
        if match and self.waiters:
            for r in list(self.waiters):
                if r.try_match():
                    self.waiters.remove(r)
                    if not r.done:
                        self.active.append(r)
        if self.active:
            self.active = [a for a in self.active if not a.step()]
        if self.cur is not None:
            self.step_cur()

    def serve(self):
        ch = self.ch
        while not self.finished:
            if self.cur is None:
                seq = ch.u32(REQ_SEQ)
                if seq != self.last:
                    meta = ch.request()
                    if self.admit(meta):
                        self.last = seq
                        self.start(seq, meta)
                        continue
            self.progress(match=self.phase not in ("drain", "save"))
            self.poll_ckpt()
            if self.cur is None and not self.waiters and not self.active and self.phase is None:
                if ch.wait_request(self.last, HELPER_SPIN, 20000) == self.last:
                    if self.app_gone():
                        break
            elif HELPER_YIELD:
                os.sched_yield()
        self.wait_app()

    def app_gone(self):
        if self.proc is not None:
            return self.proc.poll() is not None
        try:
            with open(f"/proc/{self.app_pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True

    def wait_app(self):
        if self.proc is not None:
            self.code = self.proc.wait()
        else:
            while not self.app_gone():
                time.sleep(0.002)
            self.code = 0

    # -- collectives (generators: yield = not yet)
    def _wait(self, req):
        while not req.Test():
            yield

    def c_barrier(self, cnt, cid):
        yield from self._wait(self.comms[cid].Ibarrier())
        return ()

    def c_bcast(self, cnt, cid, root, n):
        comm = self.comms[cid]
        nn = np.array([n], np.int64)
        yield from self._wait(comm.Ibcast([nn, MPI.INT64_T], root))
        n = int(nn[0])
        yield from self._wait(comm.Ibcast([self.ch.data[:n], n, MPI.BYTE], root))
        return (n,)

    def c_Bcast(self, cnt, cid, root, n):
        yield from self._wait(self.comms[cid].Ibcast([self.ch.data[:n], n, MPI.BYTE], root))
        return ()

    def c_allgather(self, cnt, cid, n):
        comm = self.comms[cid]
        lens = np.zeros(comm.size, np.int64)
        yield from self._wait(comm.Iallgather([np.array([n], np.int64), MPI.INT64_T],
                                              [lens, MPI.INT64_T]))
        mine = bytes(self.ch.data[:n])
        displs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        total = int(lens.sum())
        yield from self._wait(comm.Iallgatherv([mine, MPI.BYTE],
                                               [self.ch.data[:total], (lens, displs), MPI.BYTE]))
        return ([int(x) for x in lens],)

    def c_Allreduce(self, cnt, cid, fmt, count, n, opname):
        send = np.frombuffer(self.ch.data[:n], dtype=fmt, count=count)
        recv = np.frombuffer(self.ch.data[n:2 * n], dtype=fmt, count=count)
        yield from self._wait(self.comms[cid].Iallreduce(send, recv, OPS[opname]))
        return ()

    def c_split(self, cnt, cid, color, key):
        comm = self.comms[cid]
        yield from self._wait(comm.Ibarrier())  # everyone is in: the blocking Split is short
        new = comm.Split(MPI.UNDEFINED if color == UNDEFINED else color, key)
        ncid = f"{cid}.{cnt}"
        self.log.append(("split", cid, color, key, ncid))
        if new == MPI.COMM_NULL:
            return (None,)
        self._add(ncid, new)
        return (ncid, new.rank, new.size)

    def c_dup(self, cnt, cid):
        comm = self.comms[cid]
        yield from self._wait(comm.Ibarrier())
        ncid = f"{cid}.{cnt}"
        self._add(ncid, comm.Dup())
        self.log.append(("dup", cid, ncid))
        return (ncid, self.comms[ncid].rank, self.comms[ncid].size)

    def c_free(self, cnt, cid):
        self.comms.pop(cid).Free()
        self.log.append(("free", cid))
        return ()
        yield

    # -- checkpoint
    def poll_ckpt(self):
        if self.phase is None:
            now = time.monotonic()
            if self.ckdir is None or now < self.next_check:
                return
            self.next_check = now + 0.01
            try:
                with open(os.path.join(self.ckdir, "request")) as f:
                    words = f.read().split()
            except FileNotFoundError:
                return
            if not words or words[0] == self.done_id:
                return
            self.ckpt_id, self.ckpt_term = words[0], words[1:] == ["term"]
            self.phase, self.targets, self.round, self.rounds = "cut", None, None, 0
            self.t = {"seen": time.perf_counter()}
        if self.phase == "cut":
            if self.round is None:
                in_coll = self.cur is not None and self.cur[2] == "coll"
                self.round = CtlGather(self.ctl, pickle.dumps((dict(self.coll), in_coll)))
                self.rounds += 1
            elif self.round.done():
                infos, self.round = self.round.result, None
                maxc, equal = {}, True
                for counts, _ in infos:
                    for cid, c in counts.items():
                        maxc[cid] = max(maxc.get(cid, 0), c)
                for counts, _ in infos:
                    equal = equal and all(c == maxc[cid] for cid, c in counts.items())
                if equal and not any(ic for _, ic in infos):
                    self.phase, self.expected = "drain", None
                    self.t["cut"] = time.perf_counter()
                    self.round = CtlGather(self.ctl, pickle.dumps(self.sent))
                else:
                    self.targets = maxc
        elif self.phase == "drain":
            if self.expected is None:
                if not self.round.done():
                    return
                self.expected = {}
                for src, sent in enumerate(self.round.result):
                    for (cid, dst), n in sent.items():
                        if dst == self.rank:
                            self.expected[(cid, src)] = n
            for cid, comm in self.comms.items():
                st = MPI.Status()
                msg = comm.improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, st)
                while msg is not None:
                    n = st.Get_count(MPI.BYTE)
                    buf = bytearray(n)
                    msg.Recv([buf, n, MPI.BYTE])
                    s = st.Get_source()
                    self.buffered.append([cid, s, st.Get_tag(), bytes(buf)])
                    key = (cid, self.members[cid][s])
                    self.recvd[key] = self.recvd.get(key, 0) + 1
                    msg = comm.improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, st)
            if self.active or (self.cur is not None and not self._cur_parked()):
                return
            if all(self.recvd.get(k, 0) >= n for k, n in self.expected.items()):
                self.t["drained"] = time.perf_counter()
                self.phase = "save"
                self.save()

    def _cur_parked(self):
        """The blocking request the app is in cannot finish before the cut (an unmatched receive)."""
        op = self.cur[1]
        if isinstance(op, tuple):
            r = self.reqs[op[1]]
            return isinstance(r, RecvOp) and r.state == "waiting"
        return isinstance(op, RecvOp) and op.state == "waiting"

    def _blocked_in(self):
        if self.cur is not None:
            op = self.cur[1]
            return f"{op[0]} {op[1]}" if isinstance(op, tuple) else f"{type(op).__name__}"
        if self.ch.u32(REQ_SEQ) != self.ch.u32(RESP_SEQ):
            return "held: " + str(self.ch.request()[0])  # not admitted before the cut
        return None

    def save(self):
        reqs = {}
        for rid, op in self.reqs.items():
            if isinstance(op, SendOp):
                reqs[rid] = ("sent", op.result)
            elif op.state == "done":  # (data in the channel, saved with the app, if inplace)
                reqs[rid] = ("done", op.result, None if op.inplace else bytes(op.data), op.off)
            else:
                reqs[rid] = ("recv", op.cid, op.source, op.tag, op.off, op.cap)
        rdir = os.path.join(self.ckdir, self.ckpt_id)
        os.makedirs(rdir, exist_ok=True)
        snapdir = os.path.join(rdir, f"rank_{self.rank}")
        st = {"log": self.log, "buffered": self.buffered, "reqs": reqs, "next_rid": self.next_rid,
              "app_pid": self.app_pid, "app_fd": self.app_fd,
              "snapshot": os.path.join(snapdir, f"opal_snapshot_{self.app_pid}.ckpt")}
        tmp = os.path.join(rdir, f".rank_{self.rank}.state")
        with open(tmp, "wb") as f:
            pickle.dump(st, f)
        os.rename(tmp, os.path.join(rdir, f"rank_{self.rank}.state"))
        os.makedirs(snapdir, exist_ok=True)
        t0 = time.perf_counter()
        cmd = [os.path.join(VENV_BIN, "opal-checkpoint"), "--mca", "crs", "blcr", "-w", snapdir]
        if self.ckpt_term:
            cmd.append("--term")
        out = subprocess.run(cmd + [str(self.app_pid)], capture_output=True, text=True)
        t1 = time.perf_counter()
        ok = out.returncode == 0
        self.t.update(opal_checkpoint_s=t1 - t0)
        times = {"rank": self.rank, "ok": ok, "cut_s": self.t["cut"] - self.t["seen"],
                 "drain_s": self.t["drained"] - self.t["cut"], "opal_checkpoint_s": t1 - t0,
                 "total_s": t1 - self.t["seen"], "rounds": self.rounds,
                 "buffered_msgs": len(self.buffered), "pending_reqs": len(reqs),
                 "app_blocked_in": self._blocked_in(),
                 "stderr": out.stderr.strip()[-300:]}
        with open(os.path.join(rdir, f"rank_{self.rank}.times.json"), "w") as f:
            json.dump(times, f)
        self.ctl.Barrier()
        print(f"[split] rank {self.rank}: checkpoint {self.ckpt_id} {'ok' if ok else 'FAILED'} "
              f"{json.dumps(times)}", file=sys.stderr, flush=True)
        if self.rank == 0:
            with open(os.path.join(rdir, "done" if ok else "failed"), "w") as f:
                f.write(self.ckpt_id)
        if self.ckpt_term or not ok:
            if self.proc is not None:
                if self.proc.poll() is None:
                    self.proc.kill()
                self.proc.wait()
            deadline = time.monotonic() + 10  # a restored app is not our child: wait until its
            while os.path.exists(f"/proc/{self.app_pid}") and time.monotonic() < deadline:
                time.sleep(0.005)  # PID is free again, so that a restart can have it
            MPI.Finalize()
            os._exit(0 if ok else 1)
        self.phase, self.done_id = None, self.ckpt_id
        self.sent, self.recvd = {}, {}  # a new epoch: buffered messages were counted


def main():
    args = sys.argv[1:]
    h = Helper(os.environ.get("SPLIT_CKPT_DIR"))
    if args and args[0] == "--restart":
        h.restore_app(args[1])
    else:
        if args and args[0] == "--":
            args = args[1:]
        h.start_app(args)
    h.serve()
    code = h.code
    MPI.Finalize()
    sys.exit(code)


if __name__ == "__main__":
    main()
