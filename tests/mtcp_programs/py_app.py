"""A Python process with the three kinds of state of the mtcp tests at once: a big numpy array
updated step by step (1 GiB by default), worker threads computing in pure Python, and a file
written line by line. Prints READY once everything runs, and at the end a digest of the array,
each thread's result and "done"; the file holds one line per step. The output and the file are
the same whether or not the run was checkpointed, killed and restored.

usage: py_app.py STEPS OUT [MIB]
"""
import hashlib
import sys
import threading
import time

import numpy as np

steps, out = int(sys.argv[1]), sys.argv[2]
mib = int(sys.argv[3]) if len(sys.argv) > 3 else 1024
if len(sys.argv) > 4 and sys.argv[4] == "load":  # the kernel by ctypes rather than LD_PRELOAD
    from crs.plugins import mtcp

    assert mtcp.load(), "the mtcp kernel does not serve requests"
a = np.arange(mib << 17, dtype=np.uint64)
results = [None] * 3


def work(i: int) -> None:
    x, h = i + 1, hashlib.sha256(str(i).encode())
    for _ in range(steps):
        for _ in range(300):
            x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        h.update(x.to_bytes(8, "little"))
        time.sleep(0.001)
    results[i] = f"thread {i}: {x:016x} {h.hexdigest()}"


threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
for t in threads:
    t.start()
with open(out, "w") as f:
    print("READY", flush=True)
    for step in range(steps):
        chunk = len(a) // 16
        part = a[step % 16 * chunk:(step % 16 + 1) * chunk]
        part *= np.uint64(6364136223846793005)
        part += np.uint64(step)
        f.write(f"{step:06d} {hashlib.sha256(str(step).encode()).hexdigest()}\n")
        f.flush()
for t in threads:
    t.join()
print(f"digest {hashlib.sha256(a.data).hexdigest()}")
print("\n".join(results))
print(f"done {steps}", flush=True)
