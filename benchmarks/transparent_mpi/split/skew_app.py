"""A skewed program for the cut: rank 1 computes while rank 0 waits inside an allreduce, then rank 0
computes while rank 1 waits in a Recv, a Bcast on a Dup and a rendezvous-size Isend in flight;
whatever the moment of the request, one rank is inside a collective or a receive."""
import sys
import time

import numpy as np
from mpi4py import MPI

ITERS = int(sys.argv[1]) if len(sys.argv) > 1 else 8
NAP = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()
dup = world.Dup()
big = np.arange(1 << 17, dtype="d") * (rank + 1)  # 1 MiB: rendezvous protocol
x = float(rank + 1)
for it in range(ITERS):
    if rank == 1:
        time.sleep(NAP)  # rank 0 sits in the allreduce meanwhile
    x = world.allreduce(x * 1.5, op=MPI.SUM) / size
    req = dup.Isend(big, dest=(rank + 1) % size, tag=it)
    if rank == 0:
        time.sleep(NAP)  # rank 1 sits in the Recv meanwhile
    got = np.empty_like(big)
    dup.Recv(got, source=(rank - 1) % size, tag=it)
    req.Wait()
    big = 0.5 * (big + got)
    b = np.array([x, float(it)]) if rank == 0 else np.empty(2)
    dup.Bcast(b, root=0)
    print(f"rank {rank} it {it} x {x:.12f} sum {big.sum():.6f} b {b.tolist()}", flush=True)
print(f"rank {rank} final x {x:.12f} sum {big.sum():.6f}", flush=True)
