"""Persistent requests as people write them for a fixed exchange pattern: ``Send_init`` and
``Recv_init`` once, then ``Startall`` / ``Waitall`` every step.

    python persistent.py STEPS [DELAY]

Every rank sends 256 doubles to both neighbours on a ring and receives theirs into fixed buffers,
then updates its field from them. Rank 0 prints a progress line every 100 steps and at the end
every rank's digest (gathered).
"""
import sys
import time
import zlib

import numpy as np
from mpi4py import MPI

steps = int(sys.argv[1])
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
left, right = (rank - 1) % size, (rank + 1) % size
field = np.cos(np.arange(256) * 0.01 + rank)
out_l, out_r = np.empty(256), np.empty(256)
in_l, in_r = np.empty(256), np.empty(256)
requests = [comm.Send_init(out_l, dest=left, tag=1), comm.Send_init(out_r, dest=right, tag=2),
            comm.Recv_init(in_l, source=left, tag=2), comm.Recv_init(in_r, source=right, tag=1)]
for step in range(steps):
    out_l[:] = field
    out_r[:] = field[::-1]
    MPI.Prequest.Startall(requests)
    MPI.Request.Waitall(requests)
    field = 0.5 * field + 0.25 * in_l + 0.25 * in_r[::-1] + 1e-4 * step * (rank + 1)
    if rank == 0 and step % 100 == 0:
        print(f"step {step} mean {field.mean():.12e}", flush=True)
    if delay:
        time.sleep(delay)
for r in requests:
    r.Free()
digests = comm.gather(zlib.crc32(field.tobytes()), root=0)
if rank == 0:
    for r, d in enumerate(digests):
        print(f"rank {r} digest {d:08x}")
