"""What an unwrapped MPI call (MPI_Scan is not wrapped) does with a virtual handle, before and
after a rebuild: WORLD (predefined value) and a Dup (first-incarnation real handle)."""
import numpy as np
from mpi4py import MPI
import vmpi
w = MPI.COMM_WORLD; r = w.Get_rank()
x = w.Dup(); d = w.Dup(); x.Free()   # x freed before d: the replay gives d another real handle
def scan(c, name, tag):
    a = np.array([1], "i"); b = np.zeros(1, "i")
    try:
        c.Scan(a, b); res = f"ok {b[0]} (want {r + 1})"
    except MPI.Exception as e:
        res = f"error: {e.Get_error_string().splitlines()[0]}"
    print(f"[{r}] {tag} unwrapped Scan on {name} ({MPI._handleof(c) & 0xffffffff:#x}): {res}", flush=True)
scan(w, "WORLD", "before"); scan(d, "Dup", "before")
vmpi.teardown(); vmpi.rebuild()
scan(w, "WORLD", "after rebuild"); scan(d, "Dup", "after rebuild")
