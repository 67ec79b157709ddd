"""Is a communicator made from a session slower than MPI_COMM_WORLD (no layer involved)?
   python pp_session.py world|session  -> 8 B and 64 KiB ping-pong half round trip, us"""
import sys, numpy as np, mpi4py
mode = sys.argv[1]
if mode == "session":
    mpi4py.rc.initialize = False; mpi4py.rc.finalize = False
from mpi4py import MPI
if mode == "session":
    s = MPI.Session.Init(); g = s.Create_group("mpi://WORLD"); w = MPI.Intracomm.Create_from_group(g, "x")
else:
    w = MPI.COMM_WORLD
r = w.Get_rank()
for sz, k in ((8, 20000), (65536, 2000)):
    b = np.zeros(sz, "b")
    for rep in range(3):
        w.Barrier(); t0 = MPI.Wtime()
        for _ in range(k):
            if r == 0: w.Send(b, 1, 1); w.Recv(b, 1, 1)
            else: w.Recv(b, 0, 1); w.Send(b, 0, 1)
        if r == 0: print(f"{mode} {sz} B: {(MPI.Wtime()-t0)/k/2*1e6:.2f} us", flush=True)
if mode == "session":
    w.Free(); g.Free(); s.Finalize()
