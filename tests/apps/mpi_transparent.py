"""An mpi4py program that knows nothing of pycrs, for transparent checkpoints at any moment.

    python mpi_transparent.py STEPS DELAY [window|datatype|tcp|slow]

Every step: a token goes round a ring (each rank's receive for it is posted in the step before,
so one Irecv is always outstanding, across steps), a halo exchange on a Dup of COMM_WORLD
(Sendrecv one way, Isend/Irecv the other) updates a numpy field with a stencil, an Allreduce on
a communicator from Split adds to an accumulator; every tenth step a pickled send/recv round
the ring and a pickled bcast from rank 0. At the end rank 0 prints one checksum line per rank,
in rank order, on stdout: the same for every run with the same STEPS and number of ranks.
``window``: a one-sided window (MPI.Win) is open from the start to the end; ``datatype``: a
derived datatype (a contiguous pair of doubles) is committed from the start to the end and
carries the halo's Sendrecv; ``tcp``: each rank holds a listening TCP socket of its own (which
no image can hold); ``log``: each rank writes a line per step to ``rank.R.log`` in its working
directory (a file a restore must find again); ``slow``: half way through, rank 0 says so on
stderr (``rank 0 computes``) and computes for 6 s without calling MPI, while rank 2 waits for it
in the Allreduce (no consistent cut until it is back; the output is the same). Each rank says on
stderr that it started (a restored rank does not start again).
"""
import socket
import sys
import time
import zlib

import numpy as np
from mpi4py import MPI

steps, delay = int(sys.argv[1]), float(sys.argv[2])
feature = sys.argv[3] if len(sys.argv) > 3 else "none"

world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()
print(f"mpi_transparent: rank {rank} of {size} started", file=sys.stderr, flush=True)
halo = world.Dup()
sub = world.Split(rank % 2, rank)
left, right = (rank - 1) % size, (rank + 1) % size
window = MPI.Win.Create(np.zeros(8), comm=world) if feature == "window" else None
pair = MPI.DOUBLE.Create_contiguous(2).Commit() if feature == "datatype" else None
server = socket.create_server(("127.0.0.1", 0)) if feature == "tcp" else None
log = open(f"rank.{rank}.log", "w") if feature == "log" else None

field = np.sin(np.arange(4096, dtype=np.float64) + rank)
acc = np.zeros(1)
token = np.zeros(1, dtype=np.int64)
pending = world.Irecv(token, source=left, tag=7)  # matched by the left rank's next send
ghost_l, ghost_r = np.empty(1), np.empty(1)
part, total = np.empty(1), np.empty(1)

for step in range(steps):
    world.Send(np.array([step * size + rank], dtype=np.int64), dest=right, tag=7)
    pending.Wait()
    assert int(token[0]) == step * size + left, (rank, step, int(token[0]))
    acc += token[0]
    pending = world.Irecv(token, source=left, tag=7)

    if pair is None:
        halo.Sendrecv(field[-1:].copy(), dest=right, sendtag=1, recvbuf=ghost_l, source=left,
                      recvtag=1)
    else:  # the last two values as one element of the derived type; the last one is the ghost
        two = np.empty(2)
        halo.Sendrecv([field[-2:].copy(), 1, pair], dest=right, sendtag=1, recvbuf=[two, 1, pair],
                      source=left, recvtag=1)
        ghost_l[0] = two[1]
    send_l = field[:1].copy()
    MPI.Request.Waitall([halo.Irecv(ghost_r, source=right, tag=2),
                         halo.Isend(send_l, dest=left, tag=2)])
    padded = np.concatenate([ghost_l, field, ghost_r])
    field = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:] + 1e-3 * step

    if feature == "slow" and rank == 0 and step == steps // 2:
        print("mpi_transparent: rank 0 computes", file=sys.stderr, flush=True)
        time.sleep(6)
    part[0] = field.sum()
    if log is not None:
        log.write(f"step {step}\n")
        log.flush()
    sub.Allreduce(part, total, op=MPI.SUM)
    acc += total

    if step % 10 == 0:
        world.send({"step": step, "from": rank}, dest=right, tag=3)
        got = world.recv(source=left, tag=3)
        assert got == {"step": step, "from": left}, (rank, got)
        config = world.bcast({"scale": 1.0 + 1e-6 * step} if rank == 0 else None, root=0)
        field *= config["scale"]
    if delay:
        time.sleep(delay)

world.Send(np.array([-1], dtype=np.int64), dest=right, tag=7)
pending.Wait()
if window is not None:
    window.Free()
if pair is not None:
    pair.Free()
line = f"rank {rank}: field crc32 {zlib.crc32(field.tobytes()):08x} acc {float(acc[0])!r}"
lines = world.gather(line, root=0)
if rank == 0:
    print("\n".join(lines), flush=True)
