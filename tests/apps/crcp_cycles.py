"""An mpi4py job with no pycrs calls in its computation, and a thread that drives the MPI layer
directly (tests/test_crcp_layer.py): at random moments it brings the job to a cut, tears MPI
down and brings it back in the same job, as a checkpoint that continues would.

The computation: a ring (Sendrecv), a halo exchange on a Dup'ed communicator (Isend/Irecv,
Waitall), a pickled allreduce on a Split, a buffer Allreduce and Barrier on the world, pickled
send/recv (Mprobe/Mrecv underneath) and a receive left outstanding across iterations. Every rank
sleeps a different, varying time per step, so that the ranks are at different points (inside a
collective, in a receive, computing) when a cut is asked for.

usage: crcp_cycles.py STEPS CYCLES SEED [refuse]   ("refuse": hold a shared-memory window, which
the layer cannot bring back, so that every cut is refused; the job still ends with the right
answer)
"""
import random
import sys
import threading
import time
import traceback

import numpy as np
from mpi4py import MPI

steps, cycles, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
refuse = "refuse" in sys.argv[4:]
w = MPI.COMM_WORLD
r, n = w.Get_rank(), w.Get_size()
d = w.Dup()
s = w.Split(r % 2, r)
held = MPI.Win.Allocate_shared(8, comm=w) if refuse else None
acc = np.zeros(4)
x = np.full(1000, float(r))
buf = np.zeros(1)
req = w.Irecv(buf, source=(r - 1) % n, tag=99)
outcomes: list[str] = []


def control() -> None:
    from snapc import crcp

    rnd = random.Random(seed)
    for _ in range(cycles):
        time.sleep(rnd.uniform(0.0, 0.25))
        try:
            crcp.quiesce()
        except crcp.LayerError as exc:
            outcomes.append(f"refused: {exc}")
            continue
        outcomes.append(f"cycle drained {crcp.stats()['drained_messages']:.0f}")
        crcp.resume(False)


thread = threading.Thread(target=control)
if cycles:
    thread.start()
pace = random.Random(seed * 100 + r)


def compute() -> None:
    global req
    for i in range(steps):
        out, inn = np.array([float(i * n + r)]), np.zeros(1)
        w.Sendrecv(out, dest=(r + 1) % n, recvbuf=inn, source=(r - 1) % n)
        acc[0] += inn[0]
        left, right = (r - 1) % n, (r + 1) % n
        hl, hr = np.zeros(10), np.zeros(10)
        rq = [d.Irecv(hl, source=left, tag=1), d.Irecv(hr, source=right, tag=2),
              d.Isend(x[:10], dest=right, tag=1), d.Isend(x[-10:], dest=left, tag=2)]
        MPI.Request.Waitall(rq)
        x[:10] += 0.001 * hl
        x[-10:] += 0.001 * hr
        acc[1] += s.allreduce(float(i + r))
        total = np.zeros(1)
        w.Allreduce(np.array([x.sum()]), total)
        acc[2] += total[0]
        if r == 0:
            for p in range(1, n):
                w.send({"i": i, "v": [i] * 3}, dest=p, tag=7)
        else:
            acc[3] += sum(w.recv(source=0, tag=7)["v"])
        if i % 10 == 0:
            w.Send(np.array([float(i)]), dest=(r + 1) % n, tag=99)
            req.Wait()
            acc[3] += buf[0]
            req = w.Irecv(buf, source=(r - 1) % n, tag=99)
        if i % 50 == 0:
            w.Barrier()
        time.sleep(pace.uniform(0, 0.004))


try:
    compute()
except BaseException:  # noqa: BLE001 - the other ranks would wait for this one forever
    traceback.print_exc()
    sys.stderr.flush()
    w.Abort(1)
w.Send(np.array([0.0]), dest=(r + 1) % n, tag=99)
req.Wait()
if cycles:
    thread.join()
if held is not None:
    held.Free()
results = w.gather((acc.tolist(), outcomes), root=0)
if r == 0:  # one writer: the launcher interleaves the ranks' output
    for rank, (_, lines) in enumerate(results):
        for line in lines:
            print(f"[{rank}] {line}")
    print("RESULT", " ".join(f"{v:.6f}" for a, _ in results for v in a), flush=True)
