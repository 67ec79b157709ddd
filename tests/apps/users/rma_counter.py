"""One-sided communication as people write it: a window of counters over a numpy array
(``Win.Create``), updated with ``Accumulate`` and read with ``Get`` between ``Fence`` calls.

    python rma_counter.py STEPS [DELAY]

Each rank exposes 16 int64 counters. At each step every rank adds (step + its rank) to counter
(step mod 16) of the rank (step mod size), then reads the neighbour's counters with Get and
folds them into a local checksum. Rank 0 prints a progress line every 100 steps and, at the
end, every rank's counters and checksum (gathered).
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
counters = np.zeros(16, dtype=np.int64)
win = MPI.Win.Create(counters, disp_unit=counters.itemsize, comm=comm)
seen = np.zeros(16, dtype=np.int64)
check = 0

win.Fence()
for step in range(steps):
    target = step % size
    add = np.array([step + rank], dtype=np.int64)
    win.Accumulate([add, MPI.INT64_T], target, target=[step % 16, 1, MPI.INT64_T], op=MPI.SUM)
    win.Fence()
    win.Get([seen, MPI.INT64_T], (rank + 1) % size)
    win.Fence()
    check = zlib.crc32(seen.tobytes(), check)
    if rank == 0 and step % 100 == 0:
        print(f"step {step} counter0 {int(counters[0])}", flush=True)
    if delay:
        time.sleep(delay)
win.Free()
everything = comm.gather((counters.tolist(), check), root=0)
if rank == 0:
    for r, (c, k) in enumerate(everything):
        crc = zlib.crc32(np.array(c).tobytes())
        print(f"rank {r} counters {crc:08x} sum {sum(c)} check {k:08x}")
