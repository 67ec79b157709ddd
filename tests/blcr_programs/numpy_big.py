"""A big numpy array (1 GiB by default) updated for STEPS steps; prints READY once the array is
filled, and at the end the step count and a SHA-256 digest of the array, which must be the same
whether or not the run was checkpointed, killed and restored.

usage: numpy_big.py STEPS [MIB]
"""
import hashlib
import sys

import numpy as np

steps = int(sys.argv[1])
mib = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
a = np.arange(mib << 17, dtype=np.uint64)  # every page written
print("READY", flush=True)
for step in range(steps):
    chunk = len(a) // 16
    part = a[step % 16 * chunk:(step % 16 + 1) * chunk]   # a sixteenth of the array
    part *= np.uint64(6364136223846793005)
    part += np.uint64(step)
print(f"steps {steps} digest {hashlib.sha256(a.data).hexdigest()}", flush=True)
