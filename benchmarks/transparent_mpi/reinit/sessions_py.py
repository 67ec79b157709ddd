"""mpi4py MPI.Session: init / comm from mpi://WORLD / communicate / free / finalize, N times."""
import os, sys, time
from array import array
import mpi4py
mpi4py.rc.initialize = False
mpi4py.rc.finalize = False
from mpi4py import MPI

n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
for it in range(n):
    t0 = time.perf_counter()
    s = MPI.Session.Init()
    g = s.Create_group("mpi://WORLD")
    c = MPI.Intracomm.Create_from_group(g, "org.pycrs.reinit.py")
    t1 = time.perf_counter()
    r, size = c.Get_rank(), c.Get_size()
    if os.environ.get("PICKLE"):  # lowercase API: mpi4py locks via an attribute on MPI_COMM_SELF
        tot = c.allreduce(r)
        got = c.sendrecv(("tok", it, r), dest=(r + 1) % size, source=(r - 1) % size)
    else:
        a, b = array("i", [r]), array("i", [0])
        c.Allreduce(a, b); tot = b[0]
        t = array("i", [1000 * it + r]); got = array("i", [0])
        c.Sendrecv(t, (r + 1) % size, 7, got, (r - 1) % size, 7); got = got[0]
    c.Free(); g.Free()
    t2 = time.perf_counter()
    s.Finalize()
    t3 = time.perf_counter()
    print(f"[{r}] py round {it}: allreduce {tot} ring {got}  init+comm {1e3*(t1-t0):.1f} ms  finalize {1e3*(t3-t2):.1f} ms", flush=True)
print(f"[{r}] after last finalize: threads {len(os.listdir('/proc/self/task'))} fds "
      + " ".join(f"{fd}:{os.readlink('/proc/self/fd/'+fd)}" for fd in sorted(os.listdir('/proc/self/fd'), key=int)[3:] if os.path.exists('/proc/self/fd/'+fd)), flush=True)
