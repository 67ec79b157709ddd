"""A small MPI test battery: every check prints one deterministic line on rank 0.

argv: OUTDIR STDIN_LINES. Each rank first writes OUTDIR/rank.<r>.json (its PID and whether the
pycrs runtime is active in it). Then the checks; then every rank writes a few lines to stdout
and stderr; then rank 0 reads exactly STDIN_LINES lines from stdin (Open MPI never delivers EOF
on stdin) and echoes them. Nothing printed depends on timing, host names or PIDs, so that the
output is the same under the plain launcher and under our mpirun, with or without C/R.
"""
import json
import os
import sys

import numpy as np
from mpi4py import MPI

import crs

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
outdir, stdin_lines = sys.argv[1], int(sys.argv[2])
assert size == 4, "the battery is written for 4 ranks"
left, right = (rank - 1) % size, (rank + 1) % size

with open(os.path.join(outdir, f".rank.{rank}.tmp"), "w") as f:
    json.dump({"rank": rank, "pid": os.getpid(), "cr_active": crs.is_active()}, f)
os.rename(os.path.join(outdir, f".rank.{rank}.tmp"), os.path.join(outdir, f"rank.{rank}.json"))


def say(line, stream=sys.stdout):
    """One whole line in one write: launchers interleave the ranks' output write by write, and
    print() makes two writes of a line where Python's output is unbuffered (PYTHONUNBUFFERED)."""
    stream.write(line + "\n")
    stream.flush()


def report(name, value):
    """Rank 0 prints what every rank found (gathered), so that a wrong rank shows up too."""
    everyone = comm.gather(value, root=0)
    if rank == 0:
        say(f"suite {name}: {everyone!r}")


# --- environment (no host names, nothing that varies between runs) ------------------------------
report("size", size)
report("version", MPI.Get_version())
report("thread level", MPI.Query_thread())
report("is thread main", MPI.Is_thread_main())
report("attribute TAG_UB", comm.Get_attr(MPI.TAG_UB))
report("attribute APPNUM", comm.Get_attr(MPI.APPNUM))
report("attribute UNIVERSE_SIZE", comm.Get_attr(MPI.UNIVERSE_SIZE))
report("attribute WTIME_IS_GLOBAL", comm.Get_attr(MPI.WTIME_IS_GLOBAL))
report("errhandler is return", comm.Get_errhandler() == MPI.ERRORS_RETURN)

# --- point to point, blocking -------------------------------------------------------------------
if rank % 2 == 0:
    comm.send({"from": rank, "data": [rank] * 3}, dest=right, tag=7)
    got = comm.recv(source=left, tag=7)
else:
    got = comm.recv(source=left, tag=7)
    comm.send({"from": rank, "data": [rank] * 3}, dest=right, tag=7)
report("send/recv pickled ring", got)

buf = np.arange(10, dtype=np.float64) + 100 * rank
recv = np.empty(10, dtype=np.float64)
if rank % 2 == 0:
    comm.Send([buf, MPI.DOUBLE], dest=right, tag=8)
    comm.Recv([recv, MPI.DOUBLE], source=left, tag=8)
else:
    comm.Recv([recv, MPI.DOUBLE], source=left, tag=8)
    comm.Send([buf, MPI.DOUBLE], dest=right, tag=8)
report("Send/Recv numpy ring", recv.tolist())

st = MPI.Status()
recv_i = np.empty(4, dtype="i")
comm.Sendrecv(np.full(4, rank, dtype="i"), dest=right, sendtag=9, recvbuf=recv_i, source=left,
              recvtag=9, status=st)
report("Sendrecv", (recv_i.tolist(), st.Get_source(), st.Get_tag(), st.Get_count(MPI.INT)))
report("sendrecv pickled", comm.sendrecv(("hello", rank), dest=left, source=right))
rep = np.array([rank, rank * rank], dtype="i")
comm.Sendrecv_replace(rep, dest=right, source=left)
report("Sendrecv_replace buffer", rep.tolist())

# probe: rank 0 receives from every other rank in the order of their tags, sizes unknown ahead
if rank == 0:
    seen = []
    for tag in (13, 12, 11):
        st = MPI.Status()
        comm.Probe(source=MPI.ANY_SOURCE, tag=tag, status=st)
        n = st.Get_count(MPI.INT64_T)
        data = np.empty(n, dtype=np.int64)
        comm.Recv(data, source=st.Get_source(), tag=tag)
        seen.append((st.Get_source(), tag, n, int(data.sum())))
else:
    comm.Send(np.arange(rank * 5, dtype=np.int64), dest=0, tag=10 + rank)
    seen = None
report("Probe/Recv unknown sizes", seen)
obj_probe = None
if rank == 1:
    comm.send(list(range(5)), dest=0, tag=21)
if rank == 0:
    st = MPI.Status()
    comm.probe(source=1, tag=21, status=st)
    obj_probe = (st.Get_source(), st.Get_tag(), comm.recv(source=1, tag=21))
report("probe/recv pickled", obj_probe)
comm.Barrier()

# --- point to point, nonblocking ----------------------------------------------------------------
sends = [np.full(3, rank * 10 + peer, dtype="i") for peer in range(size)]
recvs = [np.empty(3, dtype="i") for _ in range(size)]
reqs = [comm.Irecv(recvs[peer], source=peer, tag=30) for peer in range(size)]
reqs += [comm.Isend(sends[peer], dest=peer, tag=30) for peer in range(size)]
statuses = [MPI.Status() for _ in reqs]
MPI.Request.Waitall(reqs, statuses)
report("Isend/Irecv/Waitall all pairs", [r.tolist() for r in recvs])
report("Waitall statuses", [(s.Get_source(), s.Get_tag()) for s in statuses[:size]])
sreq = comm.isend({"rank": rank, "square": rank * rank}, dest=left, tag=31)
rreq = comm.irecv(source=right, tag=31)
report("isend/irecv pickled", rreq.wait())
sreq.wait()
r = comm.Irecv(recv_i, source=left, tag=32)
comm.Isend(np.full(4, -rank, dtype="i"), dest=right, tag=32).Wait()
done = False
while not done:
    done = r.Test()
report("Test until done", recv_i.tolist())
idx_reqs = [comm.Irecv(np.empty(1, "i"), source=left, tag=33)]
comm.Send(np.array([rank], "i"), dest=right, tag=33)
report("Waitany", MPI.Request.Waitany(idx_reqs))

# --- collectives --------------------------------------------------------------------------------
report("bcast pickled", comm.bcast({"root": "data", "n": [1, 2, 3]} if rank == 0 else None, root=0))
arr = np.arange(5, dtype="d") * 1.5 if rank == 2 else np.zeros(5, dtype="d")
comm.Bcast(arr, root=2)
report("Bcast numpy root 2", arr.tolist())
report("scatter pickled", comm.scatter([f"part-{i}" for i in range(size)] if rank == 0 else None))
part = np.empty(3, dtype="i")
comm.Scatter(np.arange(3 * size, dtype="i") if rank == 1 else None, part, root=1)
report("Scatter numpy root 1", part.tolist())
report("gather pickled", comm.gather((rank, chr(97 + rank)), root=3))
g = np.empty((size, 2), dtype="i") if rank == 0 else None
comm.Gather(np.array([rank, -rank], dtype="i"), g, root=0)
report("Gather numpy", g.tolist() if g is not None else None)
report("allgather pickled", comm.allgather(rank ** 2))
ag = np.empty(size, dtype="i")
comm.Allgather(np.array([rank * 3], dtype="i"), ag)
report("Allgather numpy", ag.tolist())
counts = [i + 1 for i in range(size)]
agv = np.empty(sum(counts), dtype="i")
comm.Allgatherv(np.full(rank + 1, rank, dtype="i"), [agv, counts])
report("Allgatherv numpy", agv.tolist())
report("reduce pickled sum", comm.reduce(rank + 1, op=MPI.SUM, root=0))
red = np.zeros(3, dtype="d") if rank == 0 else None
comm.Reduce(np.array([rank, 2.0 * rank, 1.0], dtype="d"), red, op=MPI.SUM, root=0)
report("Reduce numpy sum", red.tolist() if red is not None else None)
ops = {"SUM": MPI.SUM, "PROD": MPI.PROD, "MAX": MPI.MAX, "MIN": MPI.MIN, "LAND": MPI.LAND,
       "LOR": MPI.LOR, "BAND": MPI.BAND, "BOR": MPI.BOR, "BXOR": MPI.BXOR}
for name, op in ops.items():
    out = np.empty(2, dtype="i")
    comm.Allreduce(np.array([rank + 1, (rank + 1) * 3 % 7], dtype="i"), out, op=op)
    report(f"Allreduce {name}", out.tolist())
report("allreduce pickled MAX", comm.allreduce((rank * 7) % 5, op=MPI.MAX))
report("allreduce pickled list SUM", comm.allreduce([rank], op=MPI.SUM))
double_int = np.dtype([("v", "d"), ("i", "i")], align=True)  # MPI_DOUBLE_INT's layout
loc = np.zeros(1, dtype=double_int)
pair = np.array([((rank * 5) % 4 + 0.5, rank)], dtype=double_int)
comm.Allreduce([pair, MPI.DOUBLE_INT], [loc, MPI.DOUBLE_INT], op=MPI.MAXLOC)
report("Allreduce MAXLOC", (float(loc["v"][0]), int(loc["i"][0])))
comm.Allreduce([pair, MPI.DOUBLE_INT], [loc, MPI.DOUBLE_INT], op=MPI.MINLOC)
report("Allreduce MINLOC", (float(loc["v"][0]), int(loc["i"][0])))
report("alltoall pickled", comm.alltoall([(rank, peer) for peer in range(size)]))
a2a = np.empty(size * 2, dtype="i")
comm.Alltoall(np.arange(size * 2, dtype="i") + 100 * rank, a2a)
report("Alltoall numpy", a2a.tolist())
report("scan pickled", comm.scan(rank + 1))
xs = comm.exscan(rank + 1)
report("exscan pickled", xs if rank > 0 else None)  # undefined on rank 0
sc = np.empty(2, dtype="i")
comm.Scan(np.array([rank, 1], dtype="i"), sc, op=MPI.SUM)
report("Scan numpy", sc.tolist())
ex = np.full(2, -99, dtype="i")
comm.Exscan(np.array([rank + 1, 2], dtype="i"), ex, op=MPI.PROD)
report("Exscan numpy", ex.tolist() if rank > 0 else None)  # undefined on rank 0
rsb = np.empty(1, dtype="i")
comm.Reduce_scatter_block(np.arange(size, dtype="i") * (rank + 1), rsb, op=MPI.SUM)
report("Reduce_scatter_block", rsb.tolist())
comm.Barrier()
ib = comm.Iallreduce(np.array([rank], "i"), ag[:1], op=MPI.SUM)
ib.Wait()
report("Iallreduce", ag[:1].tolist())
comm.Ibarrier().Wait()
report("Ibarrier", True)

# --- communicators ------------------------------------------------------------------------------
split = comm.Split(color=rank % 2, key=-rank)
report("Split rank/size", (split.Get_rank(), split.Get_size()))
report("Split allgather", split.allgather(rank))
report("Split allreduce", split.allreduce(rank))
dup = comm.Dup()
report("Dup compare", MPI.Comm.Compare(comm, dup) == MPI.CONGRUENT)
dup.send(rank, dest=right, tag=1)
report("Dup p2p isolated from world", (dup.recv(source=left, tag=1),
                                       comm.Iprobe(source=MPI.ANY_SOURCE, tag=1)))
group = comm.Get_group().Incl([3, 1, 0])
sub = comm.Create_group(group) if rank in (0, 1, 3) else MPI.COMM_NULL
report("Create_group", (sub.Get_rank(), sub.Get_size(), sub.allgather(rank))
       if sub != MPI.COMM_NULL else None)
created = comm.Create(comm.Get_group().Excl([0]))
report("Create (collective)", (created.Get_rank(), created.bcast(rank * 11, root=0))
       if created != MPI.COMM_NULL else None)
report("Group translate", MPI.Group.Translate_ranks(group, [0, 1, 2], comm.Get_group()))
cart = comm.Create_cart([2, 2], periods=[True, False])
report("Cart coords/shift", (cart.Get_coords(cart.Get_rank()), cart.Shift(0, 1), cart.Shift(1, 1)))
for c in (split, dup, cart):
    c.Free()
for c in (sub, created):
    if c != MPI.COMM_NULL:
        c.Free()
group.Free()

# --- derived datatypes --------------------------------------------------------------------------
matrix = np.arange(16, dtype="d").reshape(4, 4) + 1000 * rank
column = MPI.DOUBLE.Create_vector(4, 1, 4).Commit()
col = np.empty(4, dtype="d")
comm.Sendrecv([matrix, 1, column], dest=right, recvbuf=col, source=left)
report("vector type (a column)", col.tolist())
contig = MPI.INT.Create_contiguous(3).Commit()
got_contig = np.empty(3 * size, dtype="i")
comm.Allgather([np.array([rank, rank + 1, rank + 2], "i"), 1, contig], [got_contig, 1, contig])
report("contiguous type", got_contig.tolist())
indexed = MPI.INT.Create_indexed([2, 1], [0, 5]).Commit()
ibuf = np.arange(8, dtype="i") * (rank + 1)
iout = np.zeros(8, dtype="i")
comm.Sendrecv([ibuf, 1, indexed], dest=right, recvbuf=[iout, 1, indexed], source=left)
report("indexed type", iout.tolist())
rec_dt = np.dtype([("id", "i"), ("x", "d"), ("tag", "S4")])
mpi_rec = MPI.Datatype.Create_struct(
    [1, 1, 4], [rec_dt.fields[n][1] for n in ("id", "x", "tag")], [MPI.INT, MPI.DOUBLE, MPI.CHAR]
).Create_resized(0, rec_dt.itemsize).Commit()
records = np.array([(rank, rank / 4, b"r%d" % rank)], dtype=rec_dt)
all_records = np.empty(size, dtype=rec_dt)
comm.Allgather([records, 1, mpi_rec], [all_records, 1, mpi_rec])
report("struct type", [(int(a), float(b), c.decode()) for a, b, c in all_records.tolist()])
sub_t = MPI.DOUBLE.Create_subarray([4, 4], [2, 2], [1, 1]).Commit()
block = np.zeros((4, 4), dtype="d")
comm.Sendrecv([matrix, 1, sub_t], dest=left, recvbuf=[block, 1, sub_t], source=right)
report("subarray type", block.tolist())
report("type sizes/extents", [(t.Get_size(), t.Get_extent()[1]) for t in (column, contig, indexed,
                                                                         mpi_rec, sub_t)])
for t in (column, contig, indexed, mpi_rec, sub_t):
    t.Free()

# --- one-sided ----------------------------------------------------------------------------------
win = MPI.Win.Allocate(4 * size, disp_unit=4, comm=comm)
wmem = np.frombuffer(win.tomemory(), dtype="i")
wmem[:] = -1
win.Fence()
win.Put(np.array([rank * 100], "i"), target_rank=right, target=(rank, 1, MPI.INT))
win.Fence()
report("Win Put/Fence", wmem.tolist())
fetched = np.empty(1, "i")
win.Get(fetched, target_rank=left, target=((left - 1) % size, 1, MPI.INT))
win.Fence()
report("Win Get", fetched.tolist())
win.Free()

# --- errors -------------------------------------------------------------------------------------
try:
    comm.send("nobody", dest=size, tag=1)
except MPI.Exception as exc:
    error = ("MPI.Exception", exc.Get_error_class() == MPI.ERR_RANK)
else:
    error = "no exception"
report("send to an invalid rank", error)
try:
    comm.Bcast(np.zeros(1), root=size + 3)
except MPI.Exception as exc:
    error = ("MPI.Exception", exc.Get_error_class() == MPI.ERR_ROOT)
else:
    error = "no exception"
report("Bcast from an invalid root", error)
report("still works after errors", comm.allreduce(1))

# --- safe points (a no-op without C/R, the C/R runtime's fast path with it) ---------------------
total = 0
for step in range(300):
    crs.safe_point()
    total = (total * 31 + comm.allreduce(step * (rank + 1))) % 1_000_003
report("safe point loop", total)

# --- stdout, stderr and stdin -------------------------------------------------------------------
comm.Barrier()
for i in range(3):
    say(f"stdout rank {rank} line {i}")
    say(f"stderr rank {rank} line {i}", sys.stderr)
if rank == 0:
    for i in range(stdin_lines):
        line = sys.stdin.readline()
        say(f"stdin {i}: {line.rstrip(chr(10))!r}")
comm.Barrier()
if rank == 0:
    say("suite done")
