"""Exercises the self component's extras, chosen by argv[1]:

critical   from step 20 runs inside crs.no_checkpoint() until step 40 and until a file argv[3]
           + '.release' exists; writes 'inside' to argv[3] on entry
selfreq    asks for its own checkpoint at step 30 (into argv[3]), then SIGKILLs itself at step 60
failing    the checkpoint callback fails from the second checkpoint on
"""
import os
import signal
import sys
import time

import crs

mode, steps = sys.argv[1], int(sys.argv[2])
extra = sys.argv[3] if len(sys.argv) > 3 else ""
total, step, saves = 0, 0, 0


@crs.on_checkpoint
def save():
    global saves
    saves += 1
    if mode == "failing" and saves > 1:
        raise RuntimeError("disk quota of the application exceeded")
    print(f"checkpoint at step {step}", file=sys.stderr, flush=True)
    return {"step": step, "total": total}


state = crs.restored()
if state:
    step, total = state["step"], state["total"]


def work():
    global step, total
    total = (total * 7 + step) % 1_000_000_007
    step += 1
    time.sleep(0.05)


while step < steps:
    crs.safe_point()
    if mode == "critical" and step == 20:
        with crs.no_checkpoint():
            open(extra, "w").write("inside")
            while step < 40 or not os.path.exists(extra + ".release"):
                crs.safe_point()  # a request must wait: this is inside the critical section
                work()
        continue
    if mode == "selfreq" and step == 30 and not state:
        print("self snapshot", crs.checkpoint(extra), file=sys.stderr, flush=True)
    if mode == "selfreq" and step == 60 and not state:
        os.kill(os.getpid(), signal.SIGKILL)
    work()
print("result", total, step, flush=True)
