"""A job whose rank 0 computes for a long time (no MPI call) while the others wait for it in an
MPI_Allreduce (a collective: pickled ``allreduce`` is point-to-point, which a cut can take with
ranks blocked in it): no consistent cut can be reached until rank 0 calls MPI again
(tests/test_crcp_layer.py).

Every rank's control thread, a second into rank 0's computation, first asks for a cut with a
timeout shorter than what is left of it (the layer gives up, every rank at once, and the job
goes on), then for one without a timeout (reached once rank 0 is back), and brings MPI back up.

usage: crcp_slow_rank.py COMPUTE_SECONDS TIMEOUT_SECONDS
"""
import sys
import threading
import time

import numpy as np
from mpi4py import MPI

from snapc import crcp

compute, timeout = float(sys.argv[1]), float(sys.argv[2])
w = MPI.COMM_WORLD
r = w.Get_rank()
outcomes: list[str] = []


def control() -> None:
    # give the other ranks time to enter the Allreduce that rank 0 keeps them waiting in (a cut
    # asked for before they do is reached at once, with rank 0 short of it)
    time.sleep(1.0)
    try:
        crcp.quiesce(timeout)
        outcomes.append("cut reached")
        crcp.resume(False)
    except crcp.LayerError as exc:
        outcomes.append(f"gave up: {exc}")
    crcp.quiesce(0)
    outcomes.append("cut reached")
    crcp.resume(False)




def allreduce(value: float) -> float:
    out = np.zeros(1)
    w.Allreduce(np.array([float(value)]), out)
    return float(out[0])


total = allreduce(r)
thread = threading.Thread(target=control)
thread.start()
if r == 0:
    time.sleep(compute)
total += allreduce(r + 1)
thread.join()
results = w.gather(outcomes, root=0)
if r == 0:
    for rank, lines in enumerate(results):
        for line in lines:
            print(f"[{rank}] {line}")
    print("RESULT", total, flush=True)
