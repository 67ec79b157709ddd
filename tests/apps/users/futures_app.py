"""``mpi4py.futures`` as people use it: a pool of MPI workers mapping a function over tasks.

    mpiexec -n N python -m mpi4py.futures futures_app.py TASKS [DELAY]

Rank 0 runs this script; the other ranks are the pool's workers. The tasks are submitted in
chunks of 20 and the results collected in order; a progress line is printed after each chunk
and the digest of all results at the end.
"""
import sys
import time
import zlib

import numpy as np
from mpi4py.futures import MPIPoolExecutor


def work(n: int, delay: float) -> float:
    x = np.random.default_rng(n).random(3000)
    for _ in range(10):
        x = np.cos(x) + 0.25 * x
    if delay:
        time.sleep(delay)
    return float(x.sum())


if __name__ == "__main__":
    tasks = int(sys.argv[1])
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    results: list[float] = []
    with MPIPoolExecutor() as pool:
        for start in range(0, tasks, 20):
            chunk = range(start, min(start + 20, tasks))
            results.extend(pool.map(work, chunk, [delay] * len(chunk)))
            print(f"results {len(results)}", flush=True)
    print(f"digest {zlib.crc32(np.array(results).tobytes()):08x} of {tasks} tasks")
