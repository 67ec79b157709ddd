from mpi4py import MPI
import numpy as np
c = MPI.COMM_WORLD
r, s = c.Get_rank(), c.Get_size()
print("hello", r, s, MPI.__file__.split("/")[-3], flush=True)
v = c.allreduce(r + 1)
c.send({"x": r}, (r + 1) % s, tag=3)
got = c.recv(source=(r - 1) % s, tag=3)
a = np.arange(5, dtype="d") * (r + 1)
b = np.empty_like(a)
c.Allreduce(a, b, op=MPI.SUM)
print(r, v, got, b.tolist(), flush=True)
