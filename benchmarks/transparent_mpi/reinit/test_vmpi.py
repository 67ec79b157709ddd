"""mpi4py handles stay valid across vmpi teardown + rebuild: WORLD, SELF, Dup, Split (with an
MPI_UNDEFINED color on some ranks), a freed parent; p2p counts survive. Prints timings."""
import sys, time
import numpy as np
from mpi4py import MPI
import vmpi

w = MPI.COMM_WORLD
r, n = w.Get_rank(), w.Get_size()
d = w.Dup()
s = w.Split(r % 2, -r)
tmp = w.Dup(); sub = tmp.Split(0 if r < 2 else MPI.UNDEFINED, r); tmp.Free()

def exercise(tag):
    out = [w.allreduce(r), d.allreduce(1), s.allreduce(r), MPI.COMM_SELF.allreduce(7)]
    a = np.full(4, r, dtype="i"); b = np.empty_like(a)
    w.Sendrecv(a, (r + 1) % n, 3, b, (r - 1) % n, 3)
    out.append(int(b[0]))
    rq = d.Irecv(b, source=(r - 1) % n, tag=4); d.Isend(a, (r + 1) % n, 4).Wait(); rq.Wait()
    out.append(int(b[0]))
    if sub != MPI.COMM_NULL:
        out.append(sub.allreduce(1))
    w.Barrier()
    print(f"[{r}] {tag}: {out} handles w={MPI._handleof(w):#x} d={MPI._handleof(d):#x} s={MPI._handleof(s):#x} "
          f"counts w={vmpi.counts(w)} d={vmpi.counts(d)}", flush=True)

exercise("before")
for k in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
    w.Barrier()
    td = vmpi.teardown()
    rb = vmpi.rebuild()
    print(f"[{r}] cycle {k}: teardown {1e3*td:.1f} ms rebuild {1e3*rb:.1f} ms", flush=True)
    exercise(f"after cycle {k}")
