"""A numpy time-stepping loop that checkpoints with the pycrs ``self`` component.

Run it under pycrs, checkpoint it from another shell, kill it, restart it:

    pycrs run python examples/numpy_loop.py 400
    opal-checkpoint <PID>
    opal-restart opal_snapshot_<PID>.ckpt
"""
import hashlib
import sys
import time

import numpy as np

import crs

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.01
n = 1 << 16


@crs.on_checkpoint
def save():
    return {"step": step, "field": field, "history": history}


state = crs.restored()
if state is None:
    step, field, history = 0, np.linspace(0.0, 1.0, n), []
else:
    step, field, history = state["step"], state["field"], state["history"]
    print(f"restarted at step {step}", file=sys.stderr, flush=True)

while step < steps:
    crs.safe_point()
    field = 0.5 * (np.roll(field, 1) + np.roll(field, -1)) + 1e-3 * np.sin(field * step)
    history.append(float(field.sum()))
    step += 1
    if step % 50 == 0:
        print(f"step {step} sum {history[-1]:.12e}", flush=True)
    time.sleep(delay)

print("result", hashlib.sha256(field.tobytes()).hexdigest(), len(history), flush=True)
