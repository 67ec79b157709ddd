"""Micro-benchmarks run the same way plain and under the split helpers (unmodified mpi4py code):
ping-pong latency (Send/Recv of numpy bytes, 8 B..1 MiB; send/recv of a small object), streaming
bandwidth (a window of Isend/Irecv), Allreduce of 8 B and 1 MiB, Barrier. Each figure is the
median over REPS repetitions. Rank 0 prints one JSON line."""
import json
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
comm = MPI.COMM_WORLD
rank = comm.Get_rank()
peer = 1 - rank
now = time.perf_counter
res = {}


def med(f, iters):
    out = []
    for _ in range(REPS + 1):
        comm.Barrier()
        t0 = now()
        f(iters)
        out.append((now() - t0) / iters)
    return statistics.median(out[1:])  # the first repetition is a warm-up


def pingpong(n):
    buf = np.zeros(n, np.uint8)

    def f(iters):
        for _ in range(iters):
            if rank == 0:
                comm.Send(buf, 1, 1)
                comm.Recv(buf, 1, 1)
            else:
                comm.Recv(buf, 0, 1)
                comm.Send(buf, 0, 1)
    return f


for n in [8, 64, 512, 4096, 32768, 262144, 1048576]:
    iters = 400 if n <= 4096 else 100 if n <= 262144 else 30
    res[f"pingpong_us {n}"] = med(pingpong(n), iters) / 2 * 1e6


def objpp(iters):
    for _ in range(iters):
        if rank == 0:
            comm.send(1.5, 1, 2)
            comm.recv(source=1, tag=2)
        else:
            comm.recv(source=0, tag=2)
            comm.send(1.5, 0, 2)


res["pingpong_us obj"] = med(objpp, 400) / 2 * 1e6

W, N = 16, 1 << 20
bufs = [np.zeros(N, np.uint8) for _ in range(W)]
ack = np.zeros(1, np.uint8)


def bw(iters):
    for _ in range(iters):
        if rank == 0:
            MPI.Request.Waitall([comm.Isend(b, 1, 3) for b in bufs])
            comm.Recv(ack, 1, 4)
        else:
            MPI.Request.Waitall([comm.Irecv(b, 0, 3) for b in bufs])
            comm.Send(ack, 0, 4)


res["bandwidth_MBps 1MiB x16"] = W * N / med(bw, 5) / 1e6

for n, iters in [(1, 400), (131072, 30)]:
    a, b = np.ones(n), np.empty(n)
    res[f"allreduce_us {n * 8}"] = med(lambda k: [comm.Allreduce(a, b, MPI.SUM) for _ in range(k)],
                                       iters) * 1e6
res["allreduce_us obj"] = med(lambda k: [comm.allreduce(1.0) for _ in range(k)], 400) * 1e6
res["barrier_us"] = med(lambda k: [comm.Barrier() for _ in range(k)], 400) * 1e6
if rank == 0:
    print("BENCH " + json.dumps(res), flush=True)
