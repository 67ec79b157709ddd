"""Files written line by line: OUT gets one line per step, flushed at once; OUT.buffered gets the
same lines through Python's default buffering. Between lines the program sleeps a little, so a
checkpoint often finds it inside a system call. At the end both files are closed and "done N"
printed. An interrupted (checkpointed, killed, restored) run must leave both files exactly as
an uninterrupted run does.

usage: py_files.py STEPS OUT
"""
import hashlib
import sys
import time

steps, out = int(sys.argv[1]), sys.argv[2]
with open(out, "w") as flushed, open(out + ".buffered", "w") as buffered:
    print("READY", flush=True)
    for step in range(steps):
        line = f"{step:06d} {hashlib.sha256(str(step).encode()).hexdigest()}\n"
        flushed.write(line)
        flushed.flush()
        buffered.write(line * 3)
        time.sleep(0.002)
print(f"done {steps}", flush=True)
