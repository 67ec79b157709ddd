"""Cost of the interposition layer (libvmpi) next to plain mpi4py, side by side in one run.

    python bench.py [--reps 5] [--np-rebuild 2,4] [--mpi mpich|openmpi] [--quick]

Runs the same mpi4py worker under mpiexec without and with libvmpi preloaded, alternating the
two REPS times, and prints the median over the repetitions of: ping-pong half round-trip latency
(8 B .. 1 MiB, Send/Recv), streaming bandwidth (Isend/Irecv window, Waitall), Allreduce of 8 B
and 1 MiB, Barrier; then, with the layer, the teardown (free every communicator, finalize the
session) and rebuild (session, world/self, replay of Dup/Split) times for each job size.
Numbers from a shared or oversubscribed machine are indicative only.
"""
import argparse, json, os, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SIZES = [8, 64, 512, 4096, 32768, 262144, 1048576]


def worker(quick):
    import numpy as np
    from mpi4py import MPI
    w = MPI.COMM_WORLD
    r, n = w.Get_rank(), w.Get_size()
    res = {}
    scale = 0.2 if quick else 1.0

    def iters(nbytes, base):
        return max(5, int(base * scale / (1 + nbytes / 16384)))

    if n >= 2 and r < 2:
        peer = 1 - r
        for sz in SIZES:
            buf = np.zeros(sz, dtype="b")
            k = iters(sz, 2000)
            for _ in range(10):  # warm-up
                if r == 0: w.Send(buf, peer, 1); w.Recv(buf, peer, 1)
                else: w.Recv(buf, peer, 1); w.Send(buf, peer, 1)
            t0 = MPI.Wtime()
            for _ in range(k):
                if r == 0: w.Send(buf, peer, 1); w.Recv(buf, peer, 1)
                else: w.Recv(buf, peer, 1); w.Send(buf, peer, 1)
            res[f"pingpong {sz}"] = (MPI.Wtime() - t0) / k / 2 * 1e6  # us
        for sz in (65536, 1048576):
            window, buf = 16, np.zeros(sz, dtype="b")
            ack = np.zeros(1, dtype="b")
            k = iters(sz * 4, 200)
            t0 = MPI.Wtime()
            for _ in range(k):
                if r == 0:
                    MPI.Request.Waitall([w.Isend(buf, 1, 2) for _ in range(window)])
                    w.Recv(ack, 1, 3)
                else:
                    MPI.Request.Waitall([w.Irecv(buf, 0, 2) for _ in range(window)])
                    w.Send(ack, 0, 3)
            res[f"bandwidth {sz}"] = sz * window * k / (MPI.Wtime() - t0) / 1e6  # MB/s
    w.Barrier()
    for sz in (8, 1048576):
        a = np.ones(sz // 8, dtype="d"); b = np.empty_like(a)
        k = iters(sz, 1000)
        for _ in range(5): w.Allreduce(a, b)
        w.Barrier()
        t0 = MPI.Wtime()
        for _ in range(k): w.Allreduce(a, b)
        res[f"allreduce {sz}"] = (MPI.Wtime() - t0) / k * 1e6
    k = iters(0, 2000)
    for _ in range(10): w.Barrier()
    t0 = MPI.Wtime()
    for _ in range(k): w.Barrier()
    res["barrier"] = (MPI.Wtime() - t0) / k * 1e6
    if os.environ.get("VMPI_BENCH_REBUILD"):
        sys.path.insert(0, HERE)
        import vmpi
        d = w.Dup(); s = w.Split(r % 2, r)  # application communicators to replay
        d.allreduce(1); s.allreduce(1)       # (mpi4py adds its own duplicates for these)
        td, rb = [], []
        # Open MPI 5.0.11 survives one teardown/rebuild cycle only (see README)
        ncyc = 1 if MPI.get_vendor()[0] == "Open MPI" else (3 if quick else 5)
        for _ in range(ncyc):
            w.Barrier()
            t0 = time.perf_counter()
            vmpi.teardown()
            t1 = time.perf_counter()
            vmpi.rebuild()
            w.Barrier()
            t2 = time.perf_counter()
            td.append(t1 - t0); rb.append(t2 - t1)
        assert d.allreduce(1) == n and s.allreduce(1) == len(range(r % 2, n, 2))
        ncomm = vmpi.lib().vmpi_ncomm()
        allt = w.gather((statistics.median(td), statistics.median(rb)))
        if r == 0:
            res["teardown ms"] = 1e3 * max(x[0] for x in allt)
            res["rebuild ms"] = 1e3 * max(x[1] for x in allt)
            res["communicators"] = ncomm
    if r == 0:
        print("BENCH " + json.dumps(res), flush=True)


def launch(mpi, np_, layer, quick, rebuild=False):
    venv = os.path.join(ROOT, ".venv" if mpi == "mpich" else ".venv-openmpi")
    lib = os.path.join(HERE, "libvmpi_mpich.so" if mpi == "mpich" else "libvmpi_ompi.so")
    env = dict(os.environ, PYTHONPATH=HERE)
    cmd = [os.path.join(venv, "bin", "mpiexec")]
    if mpi == "openmpi":
        cmd += ["--oversubscribe", "--allow-run-as-root", "--mca", "pml", "ob1", "--mca", "btl", "self,sm"]
        if layer: cmd += ["-x", "LD_PRELOAD=" + lib]
        if rebuild: cmd += ["-x", "VMPI_BENCH_REBUILD=1"]
    else:
        if layer: cmd += ["-genv", "LD_PRELOAD", lib]
        if rebuild: cmd += ["-genv", "VMPI_BENCH_REBUILD", "1"]
    cmd += ["-n", str(np_), os.path.join(venv, "bin", "python"), os.path.abspath(__file__), "--worker"]
    if quick: cmd.append("--quick")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                         close_fds=True)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def build(mpi):
    cc = os.path.join(ROOT, ".venv" if mpi == "mpich" else ".venv-openmpi", "bin", "mpicc")
    lib = os.path.join(HERE, "libvmpi_mpich.so" if mpi == "mpich" else "libvmpi_ompi.so")
    src = os.path.join(HERE, "libvmpi.c")
    if not os.path.exists(lib) or os.path.getmtime(lib) < max(os.path.getmtime(src), os.path.getmtime(os.path.join(HERE, "procstate.h"))):
        subprocess.run([cc, "-O2", "-g", "-Wall", "-Wno-format-truncation", "-shared", "-fPIC", "-o", lib, src], check=True)


def c_overhead(mpi, mode):
    """the C program overhead.c: plain (world model), session (no layer), layer"""
    venv = os.path.join(ROOT, ".venv" if mpi == "mpich" else ".venv-openmpi")
    exe = os.path.join(HERE, "overhead_" + mpi)
    src = os.path.join(HERE, "overhead.c")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        subprocess.run([os.path.join(venv, "bin", "mpicc"), "-O2", "-o", exe, src], check=True)
    lib = os.path.join(HERE, "libvmpi_mpich.so" if mpi == "mpich" else "libvmpi_ompi.so")
    cmd = [os.path.join(venv, "bin", "mpiexec")]
    if mpi == "openmpi":
        cmd += ["--oversubscribe", "--allow-run-as-root", "--mca", "pml", "ob1", "--mca", "btl", "self,sm"]
        if mode == "layer": cmd += ["-x", "LD_PRELOAD=" + lib]
        if mode == "session": cmd += ["-x", "OVERHEAD_SESSION=1"]
    else:
        if mode == "layer": cmd += ["-genv", "LD_PRELOAD", lib]
        if mode == "session": cmd += ["-genv", "OVERHEAD_SESSION", "1"]
    out = subprocess.run(cmd + ["-n", "2", exe], capture_output=True, text=True, timeout=120, close_fds=True).stdout
    f = out.split()
    return float(f[1]), float(f[6])  # ns per Comm_rank, us per 8 B half round trip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mpi", default="mpich", choices=["mpich", "openmpi"])
    ap.add_argument("--np-rebuild", default="2,4")
    a = ap.parse_args()
    if a.worker:
        return worker(a.quick)
    build(a.mpi)
    plain, layer = [], []
    for _ in range(a.reps):  # alternate, so that drifting machine load hits both alike
        plain.append(launch(a.mpi, 2, False, a.quick))
        layer.append(launch(a.mpi, 2, True, a.quick))
    med = lambda rs, k: statistics.median(x[k] for x in rs)
    print(f"# {a.mpi}, 2 ranks, median of {a.reps} runs (alternating); indicative only on a shared 2-core VM")
    print(f"{'test':<22}{'unit':>6}{'plain mpi4py':>14}{'with libvmpi':>14}{'overhead':>10}")
    for k in plain[0]:
        unit = "MB/s" if k.startswith("bandwidth") else "us"
        p, l = med(plain, k), med(layer, k)
        ov = (p / l - 1) if unit == "MB/s" else (l / p - 1)
        label = k if not k.split()[-1].isdigit() else f"{k.split()[0]} {int(k.split()[-1]):>8} B"
        print(f"{label:<22}{unit:>6}{p:>14.2f}{l:>14.2f}{100 * ov:>9.1f}%")
    print()
    cres = {m: [] for m in ("plain", "session", "layer")}
    for _ in range(a.reps):
        for m in cres:
            cres[m].append(c_overhead(a.mpi, m))
    print(f"# C, no Python (overhead.c), median of {a.reps}: world model / session communicator without the layer / with libvmpi")
    print(f"{'test':<22}{'unit':>6}{'plain':>10}{'session':>10}{'libvmpi':>10}")
    for j, (name, unit) in enumerate((("MPI_Comm_rank", "ns"), ("pingpong 8 B", "us"))):
        print(f"{name:<22}{unit:>6}" + "".join(f"{statistics.median(x[j] for x in cres[m]):>10.3f}" for m in cres))
    print()
    print(f"{'teardown/rebuild':<22}{'ranks':>6}{'comms':>8}{'teardown ms':>14}{'rebuild ms':>12}   (median of cycles, max over ranks)")
    for np_ in [int(x) for x in a.np_rebuild.split(",")]:
        runs = [launch(a.mpi, np_, True, a.quick, rebuild=True) for _ in range(max(1, a.reps // 2))]
        print(f"{'':<22}{np_:>6}{int(runs[0]['communicators']):>8}{med(runs, 'teardown ms'):>14.1f}{med(runs, 'rebuild ms'):>12.1f}")


if __name__ == "__main__":
    main()
