"""A 1-D heat stencil over MPI ranks: a halo exchange with point-to-point messages and a global
reduction every step, checkpointable with the pycrs ``self`` component.

    mpirun -am ft-enable-cr -np 4 python examples/mpi_stencil.py 2000 0.01 &
    ompi-checkpoint <PID of mpirun>        # Snapshot Ref.: 0 ompi_global_snapshot_<PID>.ckpt
    ompi-restart ompi_global_snapshot_<PID>.ckpt
"""
import hashlib
import sys
import time

import numpy as np
from mpi4py import MPI

import crs

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 500
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
points = int(sys.argv[3]) if len(sys.argv) > 3 else 1 << 14


@crs.on_checkpoint
def save():
    return {"step": step, "u": u, "norms": norms}


state = crs.restored()
if state is None:
    step, norms = 0, []
    x = np.linspace(rank, rank + 1, points, endpoint=False) / size
    u = np.sin(2 * np.pi * x) + 0.1 * rank
else:
    step, u, norms = state["step"], state["u"], state["norms"]
    if rank == 0:
        print(f"restarted at step {step}", file=sys.stderr, flush=True)

left, right = (rank - 1) % size, (rank + 1) % size
from_left, from_right = np.empty(1), np.empty(1)
while step < steps:
    crs.safe_point()  # no message is in flight here: a consistent cut
    requests = [comm.Irecv(from_left, source=left, tag=1),
                comm.Irecv(from_right, source=right, tag=2),
                comm.Isend(u[-1:], dest=right, tag=1), comm.Isend(u[:1], dest=left, tag=2)]
    MPI.Request.Waitall(requests)
    padded = np.concatenate([from_left, u, from_right])
    u = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:] + 1e-3 * np.sin(step + rank)
    norms.append(comm.allreduce(float(u @ u), op=MPI.SUM))
    step += 1
    if rank == 0 and step % 50 == 0:
        print(f"step {step} norm {norms[-1]:.12e}", flush=True)
    if delay:
        time.sleep(delay)

digests = comm.gather(hashlib.sha256(u.tobytes()).hexdigest(), root=0)
if rank == 0:
    print("result", hashlib.sha256("".join(digests).encode()).hexdigest(), len(norms), flush=True)
