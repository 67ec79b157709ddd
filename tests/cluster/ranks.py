"""A small mpi4py job for the emulated cluster.

``ranks.py report``: every rank says where it runs (rank, host name, its node's address as
/etc/hosts has it, the source address it would use to reach another node of the job, its boot
id); rank 0 prints one JSON line per rank and the sum of an allreduce.
``ranks.py loop SECONDS``: allreduce every 10 ms for SECONDS, rank 0 printing "tick N" each
100 iterations, then "done".
"""
import json
import socket
import sys
import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
mode = sys.argv[1] if len(sys.argv) > 1 else "report"

if mode == "report":
    host = socket.gethostname()
    address = socket.gethostbyname(host)
    others = [a for a in comm.allgather(address) if a != address]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((others[0] if others else address, 9))  # UDP connect: routing only, no packet
    source = probe.getsockname()[0]
    probe.close()
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = f.read().strip()
    me = {"rank": comm.rank, "size": comm.size, "host": host, "address": address,
          "source": source, "boot_id": boot_id}
    everyone = comm.gather(me, root=0)
    total = comm.allreduce(comm.rank)
    if comm.rank == 0:
        for entry in everyone:
            print(json.dumps(entry))
        print(json.dumps({"sum": total}), flush=True)
elif mode == "loop":
    end = time.monotonic() + float(sys.argv[2])
    i = 0
    while True:
        more = comm.allreduce(time.monotonic() < end, op=MPI.LAND)
        if not more:
            break
        i += 1
        if comm.rank == 0 and i % 100 == 0:
            print(f"tick {i}", flush=True)
        time.sleep(0.01)
    if comm.rank == 0:
        print("done", flush=True)
