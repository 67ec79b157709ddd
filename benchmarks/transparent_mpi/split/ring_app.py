"""The issue-6 test program, unmodified mpi4py: an object ring with isend/irecv (one irecv
always outstanding across iterations), a numpy halo exchange with Send/Recv/Isend/Irecv on a Dup
of COMM_WORLD, allreduce of objects, Allreduce of arrays on a Split communicator (reversed
order), bcast and Barrier. Ranks take turns being slow so that, at any moment, some rank is
blocked in a receive or a collective. Prints one line per iteration and a final digest."""
import hashlib
import sys
import time

import numpy as np
from mpi4py import MPI

ITERS = int(sys.argv[1]) if len(sys.argv) > 1 else 40
NAP = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05

world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()
right, left = (rank + 1) % size, (rank - 1) % size
dup = world.Dup()
sub = world.Split(color=0, key=size - rank)  # reversed ranks
odd = world.Split(color=rank % 2 if size > 2 else MPI.UNDEFINED if rank else 0, key=rank)
field = np.linspace(0.0, 1.0, 4096) * (rank + 1)
token = {"hops": 0, "trail": [rank]}
pending = world.irecv(source=left, tag=7)
acc = 0.0
for it in range(ITERS):
    if it % size == rank:
        time.sleep(NAP)  # this rank computes; the others block on it
    token = {"hops": token["hops"] + 1, "trail": (token["trail"] + [rank])[-8:]}
    sreq = world.isend(token, right, tag=7)
    token = pending.wait()
    sreq.wait()
    pending = world.irecv(source=left, tag=7)  # outstanding across the iteration
    halo_r, halo_l = np.empty(16), np.empty(16)
    rq = dup.Irecv(halo_l, source=left, tag=11)
    dup.Send(field[-16:].copy(), dest=right, tag=11)
    rq.Wait()
    dup.Sendrecv(field[:16].copy(), dest=left, sendtag=12, recvbuf=halo_r, source=right,
                 recvtag=12)
    field[:16] = 0.5 * (field[:16] + halo_l)
    field[-16:] = 0.5 * (field[-16:] + halo_r)
    field = np.sin(field) + 0.001 * it
    tot = np.empty_like(field)
    sub.Allreduce(field, tot, op=MPI.SUM)
    acc = world.allreduce(acc + float(tot[it % tot.size]), op=MPI.SUM) / size
    if odd != MPI.COMM_NULL:
        field += odd.bcast(it if odd.Get_rank() == 0 else None, root=0) * 1e-6
    if it % 5 == 4:
        world.Barrier()
    print(f"rank {rank} it {it} acc {acc:.12f} hops {token['hops']} trail {token['trail']}",
          flush=True)
world.send(rank, dest=right, tag=7)  # consume the outstanding irecv
last = pending.wait()
digest = hashlib.sha256(field.tobytes()).hexdigest()[:16]
print(f"rank {rank} final acc {acc:.12f} digest {digest} last {last}", flush=True)
sub.Free()
dup.Free()
