"""The application side of the split process: mpi4py's names, no MPI library. Each call is one
request to the helper over the shared-memory channel (channel.py); lowercase calls carry pickles,
uppercase calls carry the raw bytes of the buffer. Communicators and requests are small ids
minted by the helper, so they mean the same thing to a helper of a later job after a restart."""
from __future__ import annotations

import atexit
import functools
import operator
import os
import pickle
import sys
import time

_HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _HERE not in sys.path:
    sys.path.append(_HERE)
import channel as _channel  # noqa: E402

_ch = _channel.Channel(int(os.environ["SPLIT_FD"]))
_SPIN = int(os.environ.get("SPLIT_APP_SPIN", "0"))
_data = _ch.data
_call = _ch.call
_NB = {"used": 0, "live": 0}


def _nb_alloc(n):
    """Offset of an n-byte buffer in the channel's Isend/Irecv area, 0 if full (copy path)."""
    if _NB["live"] == 0:
        _NB["used"] = 0
    if n == 0 or _NB["used"] + n > _channel.NB_CAP:
        return 0
    off = _channel.NB_BASE + _NB["used"]
    _NB["used"] += (n + 63) & ~63
    _NB["live"] += 1
    return off

ANY_SOURCE = -1001
ANY_TAG = -1002
UNDEFINED = -1003
PROC_NULL = -1004
IN_PLACE = "IN_PLACE"
SUCCESS = 0
THREAD_SINGLE, THREAD_FUNNELED, THREAD_SERIALIZED, THREAD_MULTIPLE = 0, 1, 2, 3


class Op:
    def __init__(self, name, py):
        self.name, self.py = name, py

    def __repr__(self):
        return f"<shim MPI.{self.name}>"


SUM = Op("SUM", operator.add)
PROD = Op("PROD", operator.mul)
MAX = Op("MAX", lambda a, b: a if a >= b else b)
MIN = Op("MIN", lambda a, b: a if a <= b else b)
LAND = Op("LAND", lambda a, b: a and b)
LOR = Op("LOR", lambda a, b: a or b)
BAND = Op("BAND", operator.and_)
BOR = Op("BOR", operator.or_)


class Datatype:
    def __init__(self, name, char, size):
        self.name, self.char, self.size = name, char, size

    def Get_size(self):
        return self.size


BYTE = Datatype("BYTE", "B", 1)
CHAR = Datatype("CHAR", "c", 1)
INT = Datatype("INT", "i", 4)
INT32_T = Datatype("INT32_T", "i", 4)
LONG = Datatype("LONG", "l", 8)
INT64_T = Datatype("INT64_T", "q", 8)
FLOAT = Datatype("FLOAT", "f", 4)
DOUBLE = Datatype("DOUBLE", "d", 8)
_CHAR2TYPE = {"B": BYTE, "b": BYTE, "c": CHAR, "i": INT, "l": LONG, "q": INT64_T, "f": FLOAT,
              "d": DOUBLE}


def _buf(spec):
    """(byte memoryview, numpy-style format char, item count) of a buffer argument."""
    dt = None
    count = None
    if isinstance(spec, (list, tuple)):
        obj = spec[0]
        for x in spec[1:]:
            if isinstance(x, Datatype):
                dt = x
            elif isinstance(x, int):
                count = x
    else:
        obj = spec
    mv = memoryview(obj)
    fmt = dt.char if dt is not None else mv.format.lstrip("@=<")
    if fmt == "L":
        fmt = "l"
    mb = mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
    size = (dt.size if dt is not None else mv.itemsize)
    if count is not None:
        mb = mb[:count * size]
    return mb, fmt, len(mb) // size


class Status:
    def __init__(self):
        self.source, self.tag, self.count = ANY_SOURCE, ANY_TAG, 0

    def Get_source(self):
        return self.source

    def Get_tag(self):
        return self.tag

    def Get_count(self, datatype=BYTE):
        return self.count // datatype.size

    Get_elements = Get_count


def _fill(status, src, tag, n):
    if status is not None:
        status.source, status.tag, status.count = src, tag, n


class Request:
    def __init__(self, rid, kind, buf=None, off=0):
        self.rid, self.kind, self.buf, self.done, self.value = rid, kind, buf, rid is None, None
        self.off = off

    def _finish(self, r, status):
        _, src, tag, n, off = r
        _fill(status, src, tag, n)
        if self.kind == "o":
            self.value = pickle.loads(_data[off:off + n]) if n else None
        elif self.kind == "B":
            self.buf[:n] = _data[off:off + n]
        self.done = True
        if self.off:
            _NB["live"] -= 1
        return self.value

    def wait(self, status=None):
        if self.done:
            return self.value
        return self._finish(_call(("wait", self.rid), _SPIN), status)

    def test(self, status=None):
        if self.done:
            return True, self.value
        r = _call(("test", self.rid), _SPIN)
        if not r[0]:
            return False, None
        return True, self._finish(r, status)

    def Wait(self, status=None):
        self.wait(status)

    def Test(self, status=None):
        return self.test(status)[0]

    @staticmethod
    def waitall(reqs, statuses=None):
        return [r.wait(statuses[i] if statuses else None) for i, r in enumerate(reqs)]

    @staticmethod
    def Waitall(reqs, statuses=None):
        for i, r in enumerate(reqs):
            r.wait(statuses[i] if statuses else None)

    @staticmethod
    def testall(reqs):
        res = [r.test() for r in reqs]
        return all(f for f, _ in res), [v for _, v in res]


class Comm:
    def __init__(self, cid, rank, size):
        self.cid, self.rank, self.size = cid, rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def __eq__(self, other):
        return isinstance(other, Comm) and other.cid == self.cid

    def __hash__(self):
        return hash(self.cid)

    # -- point to point, objects
    def _put_obj(self, obj):
        p = pickle.dumps(obj, 5)
        n = len(p)
        _data[:n] = p
        return n

    def send(self, obj, dest, tag=0):
        _call(("send", self.cid, dest, tag, self._put_obj(obj)), _SPIN)

    def isend(self, obj, dest, tag=0):
        return Request(_call(("isend", self.cid, dest, tag, self._put_obj(obj), 0), _SPIN)[0],
                       "s")

    ssend = send
    issend = isend

    def recv(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        _, src, t, n = _call(("recv", self.cid, source, tag), _SPIN)
        _fill(status, src, t, n)
        return pickle.loads(_data[:n])

    def irecv(self, buf=None, source=ANY_SOURCE, tag=ANY_TAG):
        return Request(_call(("irecv", self.cid, source, tag, 0, 0), _SPIN)[0], "o")

    def sendrecv(self, sendobj, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE, recvtag=ANY_TAG,
                 status=None):
        r = self.irecv(source=source, tag=recvtag)
        self.send(sendobj, dest, sendtag)
        return r.wait(status)

    # -- point to point, buffers
    def Send(self, buf, dest, tag=0):
        mb, _, _ = _buf(buf)
        n = len(mb)
        _data[:n] = mb
        _call(("send", self.cid, dest, tag, n), _SPIN)

    Ssend = Send

    def Isend(self, buf, dest, tag=0):
        mb, _, _ = _buf(buf)
        n = len(mb)
        off = _nb_alloc(n)
        _data[off:off + n] = mb
        return Request(_call(("isend", self.cid, dest, tag, n, off), _SPIN)[0], "s", None, off)

    def Recv(self, buf, source=ANY_SOURCE, tag=ANY_TAG, status=None):
        mb, _, _ = _buf(buf)
        _, src, t, n = _call(("recv", self.cid, source, tag), _SPIN)
        mb[:n] = _data[:n]
        _fill(status, src, t, n)

    def Irecv(self, buf, source=ANY_SOURCE, tag=ANY_TAG):
        mb, _, _ = _buf(buf)
        off = _nb_alloc(len(mb))
        return Request(_call(("irecv", self.cid, source, tag, off, len(mb)), _SPIN)[0], "B", mb,
                       off)

    def Sendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE, recvtag=ANY_TAG,
                 status=None):
        r = self.Irecv(recvbuf, source, recvtag)
        self.Send(sendbuf, dest, sendtag)
        r.Wait(status)

    # -- collectives
    def barrier(self):
        _call(("barrier", self.cid), _SPIN)

    Barrier = barrier

    def bcast(self, obj=None, root=0):
        n = self._put_obj(obj) if self.rank == root else 0
        n = _call(("bcast", self.cid, root, n), _SPIN)[0]
        return pickle.loads(_data[:n])

    def _allgather_obj(self, obj):
        n = self._put_obj(obj)
        lens = _call(("allgather", self.cid, n), _SPIN)[0]
        out, off = [], 0
        for n in lens:
            out.append(pickle.loads(_data[off:off + n]))
            off += n
        return out

    def allgather(self, sendobj):
        return self._allgather_obj(sendobj)

    def gather(self, sendobj, root=0):
        v = self._allgather_obj(sendobj)
        return v if self.rank == root else None

    def allreduce(self, sendobj, op=SUM):
        return functools.reduce(op.py, self._allgather_obj(sendobj))

    def reduce(self, sendobj, op=SUM, root=0):
        v = self.allreduce(sendobj, op)
        return v if self.rank == root else None

    def scatter(self, sendobj, root=0):
        return self.bcast(sendobj, root)[self.rank]

    def alltoall(self, sendobj):
        return [row[self.rank] for row in self._allgather_obj(sendobj)]

    def Allreduce(self, sendbuf, recvbuf, op=SUM):
        rb, fmt, count = _buf(recvbuf)
        n = len(rb)
        if sendbuf is IN_PLACE or (isinstance(sendbuf, str) and sendbuf == IN_PLACE):
            _data[:n] = rb
        else:
            _data[:n] = _buf(sendbuf)[0]
        _call(("Allreduce", self.cid, fmt, count, n, op.name), _SPIN)
        rb[:] = _data[n:2 * n]

    def Bcast(self, buf, root=0):
        mb, _, _ = _buf(buf)
        n = len(mb)
        if self.rank == root:
            _data[:n] = mb
        _call(("Bcast", self.cid, root, n), _SPIN)
        if self.rank != root:
            mb[:] = _data[:n]

    # -- communicators
    def Split(self, color=0, key=0):
        r = _call(("split", self.cid, color, key), _SPIN)
        return COMM_NULL if r[0] is None else Intracomm(*r)

    def Dup(self, info=None):
        return Intracomm(*_call(("dup", self.cid), _SPIN))

    Clone = Dup

    def Free(self):
        if self.cid is not None:
            _call(("free", self.cid), _SPIN)
            self.cid = None

    def Abort(self, errorcode=1):
        _call(("abort", errorcode), _SPIN)


class Intracomm(Comm):
    pass


COMM_NULL = Intracomm(None, -1, 0)
_w = _call(("hello",), _SPIN)
COMM_WORLD = Intracomm("0", _w[0], _w[1])
_LIBVER = _w[2]


def Wtime():
    return time.perf_counter()


def Wtick():
    return 1e-9


def Get_processor_name():
    return os.uname().nodename


def Get_library_version():
    return _LIBVER


def Is_initialized():
    return True


def Is_finalized():
    return False


def Init():
    pass


def Init_thread(required=THREAD_MULTIPLE):
    return THREAD_SINGLE


def Query_thread():
    return THREAD_SINGLE


def Finalize():
    pass


@atexit.register
def _bye():
    sys.stdout.flush()
    sys.stderr.flush()
    _call(("bye",), _SPIN)
