"""An MPI loop whose checkpoint callback misbehaves on the Nth checkpoint of one rank.

argv: steps delay fault, where fault is KIND:RANK:N with KIND one of die (SIGKILL itself),
raise (the callback raises), slow (the callback sleeps 60 s) or pause (it sleeps 3 s), or 'none'.
Two kinds fail the rank between checkpoints instead, at the first safe point after its Nth
checkpoint (committed by then: a rank waits for the commit before it goes on): kill (SIGKILL
itself, unless it was restored: a restarted job goes on) and killagain (in a restarted job too,
after its Nth checkpoint since the restart).
"""
import os
import signal
import sys
import time

from mpi4py import MPI

import crs

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
steps, delay, fault = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
kind, fault_rank, nth = ((fault.split(":") + ["", "-1", "0"])[:3] if fault != "none"
                         else ("", "-1", "0"))
saves = 0
total, step = 0, 0


@crs.on_checkpoint
def save():
    global saves
    saves += 1
    if kind in ("die", "raise", "slow", "pause") and rank == int(fault_rank) and saves == int(nth):
        print(f"rank {rank}: fault {kind} in checkpoint {saves}", file=sys.stderr, flush=True)
        if kind == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "raise":
            raise RuntimeError(f"rank {rank} cannot save")
        if kind == "slow":
            time.sleep(60)
        if kind == "pause":
            time.sleep(3)
    return (step, total)


state = crs.restored()
if state:
    step, total = state
while step < steps:
    crs.safe_point()
    if (kind == "killagain" or (kind == "kill" and not state)) and rank == int(fault_rank) \
            and saves >= int(nth):
        print(f"rank {rank}: killed at step {step}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    total = (total * 31 + comm.allreduce(step + rank)) % 1_000_003
    step += 1
    time.sleep(delay)
if rank == 0:
    print("result", total, step, flush=True)
