"""An mpi4py application under libvmpi that tears MPI down at step K, waits (to be checkpointed,
then either continued or restored into a new job), brings MPI back and finishes. Its result must
equal an uninterrupted run's (python app_restart.py N K[,K2...]; K<0: no teardown)."""
import os, sys, time
import numpy as np
from mpi4py import MPI
import vmpi

N, KS = int(sys.argv[1]), [int(k) for k in sys.argv[2].split(',')]
w = MPI.COMM_WORLD
r, n = w.Get_rank(), w.Get_size()
d = w.Dup()
s = w.Split(r % 2, r)
acc = np.zeros(4)
for step in range(N):
    if step in KS:
        w.Barrier()  # the quiesce point: every message sent has been received (counts agree)
        sent, recvd = vmpi.counts(w)
        allc = w.allgather((sent, recvd))
        assert all(allc[p][0][q] == allc[q][1][p] for p in range(n) for q in range(n)), "in-flight messages"
        td = vmpi.teardown()
        vmpi.close_launcher_fds()
        ppid = os.getppid()
        go = f"/tmp/reinit_go.{os.getpid()}"
        print(f"[{r}] MPI torn down; pid {os.getpid()} waits for {go} or a new parent (teardown {1e3*td:.1f} ms)", file=sys.stderr, flush=True)
        while not os.path.exists(go) and os.getppid() == ppid:
            time.sleep(0.02)
        t0 = time.perf_counter()
        restored = os.getppid() != ppid
        if not restored:
            os.unlink(go)
        vmpi.adopt_parent()
        rb = vmpi.rebuild()
        print(f"[{r}] {'restored in a new job' if restored else 'continued'}: adopt+rebuild {1e3*(time.perf_counter()-t0):.1f} ms "
              f"(rebuild {1e3*rb:.1f} ms), counts kept {vmpi.counts(w)}", file=sys.stderr, flush=True)
    x = np.array([step + r, d.allreduce(step * r), s.allreduce(r + step), 0.0])
    b = np.empty(4)
    w.Sendrecv(x, (r + 1) % n, 5, b, (r - 1) % n, 5)
    acc += b
tot = w.allreduce(float(acc.sum()))
if r == 0:
    print(f"RESULT {tot}", flush=True)
