"""Several threading.Threads computing at once (pure Python, so they take turns on the GIL):
each runs STEPS rounds of a 64-bit LCG mixed with a running SHA-256 and the main thread prints
every thread's result in order. The output is the same whether or not the run was checkpointed,
killed and restored.

usage: py_threads.py STEPS [THREADS]
"""
import hashlib
import sys
import threading

steps = int(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 4
results = [None] * n


def work(i: int) -> None:
    x, h = i + 1, hashlib.sha256(str(i).encode())
    for _step in range(steps):
        for _ in range(200):
            x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        h.update(x.to_bytes(8, "little"))
    results[i] = f"thread {i}: {x:016x} {h.hexdigest()}"


threads = [threading.Thread(target=work, args=(i,), name=f"worker-{i}") for i in range(n)]
for t in threads:
    t.start()
print("READY", flush=True)
for t in threads:
    t.join()
print("\n".join(results), flush=True)
