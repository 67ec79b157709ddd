"""A 2-D heat stencil as people write it: a Cartesian communicator, halo rows as contiguous
buffers and halo columns as a vector datatype, MPI-IO snapshots of the whole field.

    python stencil2d.py STEPS [DELAY]

Each rank holds a 64 x 48 block of the global field on a periodic process grid from
``Compute_dims``. Every step exchanges the four halos (``Sendrecv`` with ``Shift``), updates the
block, and every 50 steps rank 0's ``Allreduce`` of the field's sum is printed as a progress line.
Every 100 steps the whole field is written collectively to ``field.dat`` (a subarray view, one
record per snapshot, ``Write_all``) and the number of records so far to ``records.txt`` by rank 0.
At the end rank 0 prints one digest line per rank (gathered), and the file's CRC.
"""
import sys
import time
import zlib

import numpy as np
from mpi4py import MPI

steps = int(sys.argv[1])
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
world = MPI.COMM_WORLD
dims = MPI.Compute_dims(world.Get_size(), 2)
cart = world.Create_cart(dims, periods=[True, True], reorder=False)
rank = cart.Get_rank()
py, px = cart.Get_coords(rank)
NY, NX = 64, 48
up, down = cart.Shift(0, 1)
left, right = cart.Shift(1, 1)

u = np.zeros((NY + 2, NX + 2))
yy, xx = np.meshgrid(np.arange(NY) + py * NY, np.arange(NX) + px * NX, indexing="ij")
u[1:-1, 1:-1] = np.sin(0.05 * yy) * np.cos(0.07 * xx) + 0.01 * rank
column = MPI.DOUBLE.Create_vector(NY, 1, NX + 2).Commit()  # one interior column of u
column.Set_name("halo column")

gsizes, lsizes, starts = [dims[0] * NY, dims[1] * NX], [NY, NX], [py * NY, px * NX]
block = MPI.DOUBLE.Create_subarray(gsizes, lsizes, starts).Commit()
fh = MPI.File.Open(cart, "field.dat", MPI.MODE_CREATE | MPI.MODE_WRONLY)
fh.Set_size(0)
record_bytes = gsizes[0] * gsizes[1] * 8
records = 0


def exchange(a):
    flat = a.reshape(-1)  # a view: the vector datatype walks u's own memory
    row = NX + 2
    cart.Sendrecv(a[1, 1:-1].copy(), up, 0, flat[(NY + 1) * row + 1:(NY + 1) * row + NX + 1],
                  down, 0)
    cart.Sendrecv(a[NY, 1:-1].copy(), down, 1, flat[1:NX + 1], up, 1)
    cart.Sendrecv([flat[row + 1:], 1, column], left, 2, [flat[row + NX + 1:], 1, column], right, 2)
    cart.Sendrecv([flat[row + NX:], 1, column], right, 3, [flat[row:], 1, column], left, 3)


for step in range(1, steps + 1):
    exchange(u)
    u[1:-1, 1:-1] = u[1:-1, 1:-1] + 0.1 * (
        u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4 * u[1:-1, 1:-1])
    if step % 50 == 0:
        total = cart.allreduce(float((u[1:-1, 1:-1] ** 2).sum()), op=MPI.SUM)
        if rank == 0:
            print(f"step {step} energy {total:.12e}", flush=True)
    if step % 100 == 0:
        fh.Set_view(records * record_bytes, MPI.DOUBLE, block)
        fh.Write_all(np.ascontiguousarray(u[1:-1, 1:-1]))
        records += 1
        if rank == 0:
            with open("records.txt", "w") as f:
                f.write(f"{records}\n")
    if delay:
        time.sleep(delay)

fh.Close()
column.Free()
block.Free()
digest = zlib.crc32(u[1:-1, 1:-1].tobytes())
digests = cart.gather(digest, root=0)
if rank == 0:
    for r, d in enumerate(digests):
        print(f"rank {r} digest {d:08x}")
    with open("field.dat", "rb") as f:
        print(f"field.dat crc {zlib.crc32(f.read()):08x}")
