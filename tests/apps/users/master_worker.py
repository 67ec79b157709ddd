"""A master hands out tasks, workers send results back; the master polls for results from any
worker with ``Iprobe(ANY_SOURCE, ANY_TAG)``, as people write dynamic load balancing.

    python master_worker.py TASKS [DELAY]

Rank 0 gives each worker a task (a pickled dict), then waits for any result, records it, and
gives that worker the next task, until all are done; then it tells every worker to stop (tag 2).
A task is a small numpy computation seeded by its number; its result is a float. Rank 0 prints a
progress line every 25 results and at the end the digest of all results in task order. The
order in which results arrive varies run to run; the digest does not.
"""
import sys
import time
import zlib

import numpy as np
from mpi4py import MPI

tasks = int(sys.argv[1])
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
WORK, RESULT, STOP = 1, 3, 2


def compute(n: int) -> float:
    x = np.random.default_rng(n).random(2000)
    for _ in range(20):
        x = np.sin(x) + 0.5 * x
    return float(x.sum())


if rank == 0:
    results = [None] * tasks
    following = 0
    busy = 0
    for w in range(1, size):
        if following < tasks:
            comm.send({"task": following}, dest=w, tag=WORK)
            following += 1
            busy += 1
    done = 0
    status = MPI.Status()
    while busy:
        if not comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
            time.sleep(0.0005)
            continue
        worker = status.Get_source()
        msg = comm.recv(source=worker, tag=RESULT)
        results[msg["task"]] = msg["value"]
        busy -= 1
        done += 1
        if done % 25 == 0:
            print(f"results {done}", flush=True)
        if following < tasks:
            comm.send({"task": following}, dest=worker, tag=WORK)
            following += 1
            busy += 1
    for w in range(1, size):
        comm.send(None, dest=w, tag=STOP)
    print(f"digest {zlib.crc32(np.array(results).tobytes()):08x} of {tasks} tasks")
else:
    status = MPI.Status()
    while True:
        msg = comm.recv(source=0, tag=MPI.ANY_TAG, status=status)
        if status.Get_tag() == STOP:
            break
        value = compute(msg["task"])
        if delay:
            time.sleep(delay)
        comm.send({"task": msg["task"], "value": value}, dest=0, tag=RESULT)
