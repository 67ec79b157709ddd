"""Open MPI's by-name convention: callbacks found in __main__ under the crs_self_prefix."""
import sys
import time

import numpy as np

import crs

steps, delay = int(sys.argv[1]), float(sys.argv[2])
prefix = sys.argv[3] if len(sys.argv) > 3 else "opal_crs_self_user"
acc = np.arange(1000, dtype=np.int64)
step = 0


def _checkpoint():
    return (step, acc)


def _continue():
    print(f"continue after step {step}", file=sys.stderr, flush=True)


def _restart(state):
    global step, acc
    step, acc = state
    print(f"restart callback at step {step}", file=sys.stderr, flush=True)


globals()[f"{prefix}_checkpoint"] = _checkpoint
globals()[f"{prefix}_continue"] = _continue
globals()[f"{prefix}_restart"] = _restart
crs.init()  # like MPI_Init in Open MPI: a restart hands the state over here

while step < steps:
    crs.safe_point()
    acc = (acc * 31 + step) % 1000003
    step += 1
    time.sleep(delay)
print("result", int(acc.sum()), step, flush=True)
