"""Large pickled messages through ``mpi4py.util.pkl5`` (pickle protocol 5, out-of-band
buffers), as people send dicts of big numpy arrays.

    python pkl5_app.py STEPS [DELAY]

Each step every rank sends a dict holding a 2 MiB array and its step to its right neighbour
(``pkl5`` ``isend``/``recv``) and adds what it receives to its own array; every 10 steps rank 0
broadcasts a 1 MiB array with ``pkl5`` ``bcast``. Rank 0 prints a progress line every 10 steps
and at the end every rank's digest (gathered).
"""
import sys
import time
import zlib

import numpy as np
from mpi4py import MPI
from mpi4py.util import pkl5

steps = int(sys.argv[1])
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
comm = pkl5.Intracomm(MPI.COMM_WORLD)
rank, size = comm.Get_rank(), comm.Get_size()
left, right = (rank - 1) % size, (rank + 1) % size
data = np.random.default_rng(rank).random(1 << 18)  # 2 MiB
for step in range(steps):
    req = comm.isend({"step": step, "data": data}, dest=right, tag=step % 7)
    got = comm.recv(source=left, tag=step % 7)
    req.wait()
    assert got["step"] == step
    data = 0.9 * data + 0.1 * got["data"]
    if step % 10 == 0:
        extra = comm.bcast(np.full(1 << 17, float(step)) if rank == 0 else None, root=0)
        data[: extra.size] += 1e-6 * extra
        if rank == 0:
            print(f"step {step} head {data[0]:.12e}", flush=True)
    if delay:
        time.sleep(delay)
digests = comm.gather(zlib.crc32(data.tobytes()), root=0)
if rank == 0:
    for r, d in enumerate(digests):
        print(f"rank {r} digest {d:08x}")
