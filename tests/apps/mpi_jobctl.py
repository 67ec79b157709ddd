"""Jobs whose end is decided by a signal from outside or by one rank's exit.

argv: OUTDIR MODE. Every rank records the signals USR1, TERM, INT, HUP and CONT it receives, one
name a line, in OUTDIR/signals.<rank>, and writes OUTDIR/rank.<rank>.json (its PID) once every rank
is up and its handlers are installed. MODE:

* ``wait-usr1``: safe points until SIGUSR1 arrives; then every rank ends normally and rank 0
  prints the job's result.
* ``wait-end``: safe points until SIGTERM, SIGINT or SIGHUP arrives; once every rank has seen
  one (a barrier), each rank dies of it, as it would without a handler.
* ``exit3``: every rank finalizes MPI; rank 0 then exits with status 3, once the other ranks
  have ended (so that no launcher can be racing to kill them).
* ``raise``: rank 1's uncaught exception escapes a ``try/finally`` that finalizes MPI and waits
  for the other ranks to end; the others end normally.

A rank that waits longer than LIMIT seconds for its signal exits with status 42 (a safety net
against a test that hangs, never expected).
"""
import json
import os
import signal
import sys
import time

from mpi4py import MPI

import crs

LIMIT = 120.0
outdir, mode = sys.argv[1], sys.argv[2]
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
seen = []
log = os.open(os.path.join(outdir, f"signals.{rank}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)


def record(signum, _frame):
    name = signal.Signals(signum).name[3:]
    seen.append(name)
    os.write(log, f"{name}\n".encode())


for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCONT):
    signal.signal(sig, record)
pids = comm.allgather(os.getpid())
tmp = os.path.join(outdir, f".rank.{rank}.tmp")
with open(tmp, "w") as f:
    json.dump({"rank": rank, "pid": os.getpid()}, f)
os.rename(tmp, os.path.join(outdir, f"rank.{rank}.json"))


def wait_for(names):
    """Safe points until one of ``names`` was received (sleeping: a signal interrupts it)."""
    deadline = time.monotonic() + LIMIT
    while not any(n in seen for n in names):
        if time.monotonic() > deadline:
            sys.stderr.write(f"rank {rank}: no {'/'.join(names)} within {LIMIT:g} s\n")
            sys.stderr.flush()
            os._exit(42)
        crs.safe_point()
        time.sleep(0.01)
    return next(n for n in seen if n in names)


def others_ended():
    def ended(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except OSError:
            return True

    deadline = time.monotonic() + LIMIT
    while not all(ended(p) for p in pids if p != os.getpid()):
        if time.monotonic() > deadline:
            os._exit(42)
        time.sleep(0.01)


if mode == "wait-usr1":
    wait_for(["USR1"])
    total = comm.allreduce(rank + 1)
    if rank == 0:
        sys.stdout.write(f"result {total} of {size} ranks\n")
        sys.stdout.flush()
elif mode == "wait-end":
    name = wait_for(["TERM", "INT", "HUP"])
    sig = signal.Signals["SIG" + name]
    comm.Barrier()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    time.sleep(LIMIT)
    os._exit(42)
elif mode == "exit3":
    total = comm.allreduce(rank + 1)
    MPI.Finalize()
    if rank == 0:
        sys.stdout.write(f"result {total} of {size} ranks\n")
        sys.stdout.flush()
        others_ended()
        sys.exit(3)
elif mode == "raise":
    if rank == 1:
        try:
            raise RuntimeError("rank 1 fails on purpose")
        finally:
            MPI.Finalize()
            others_ended()
else:
    raise SystemExit(f"unknown mode {mode!r}")
