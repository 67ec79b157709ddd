"""cffi build script for crs.plugins.blcr._native, run by the package build."""
import os
from pathlib import Path

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    int blcr_seize(int tid);
    int blcr_detach(int tid, int sig);
    int blcr_get_regs(int tid, void *regs);
    int blcr_set_regs(int tid, const void *regs);
    long blcr_get_xstate(int tid, void *buf, size_t len);
    int blcr_set_xstate(int tid, const void *buf, size_t len);
    int blcr_get_sigmask(int tid, uint64_t *mask);
    int blcr_set_sigmask(int tid, uint64_t mask);
    long blcr_peek_siginfo(int tid, int shared, void *buf, int max);
    int blcr_get_rseq(int tid, void *conf, size_t len);
    int blcr_get_robust_list(int tid, uint64_t *head, uint64_t *len);
    int blcr_inject(int tid, uint64_t insn, long nr, long a1, long a2, long a3, long a4,
                    long a5, long a6, long *result);
    int blcr_wait_new_thread(int tid);
    long blcr_read_mem(int pid, uint64_t addr, void *buf, size_t len);
    long blcr_write_mem(int pid, uint64_t addr, const void *buf, size_t len);
    long blcr_scan_pages(int pagemap_fd, uint64_t start, uint64_t end, int private_file,
                         uint64_t *runs, long max);
    uint32_t blcr_crc32c(const void *p, size_t n);
    long blcr_dump_runs(int pid, int mem_fd, int out_fd, const uint64_t *runs, long nruns,
                        uint64_t *pos, uint32_t *crcs, long ncrcs, uint64_t chunk);
    long blcr_verify_chunks(int fd, uint64_t size, const uint32_t *crcs, long ncrcs,
                            uint64_t chunk, uint64_t *bad_chunk);
    size_t blcr_lzp_bound(size_t n);
    long blcr_lzp_compress(const void *src, size_t n, void *dst, size_t cap, int level);
    long blcr_lzp_decompress(const void *src, size_t n, void *dst, size_t cap);
    long blcr_lzp_unpack(int in_fd, int out_fd, uint64_t raw_total, uint64_t *frame);
    int blcr_pidfd_getfd(int pidfd, int fd);
    int blcr_kcmp_file(int pid, int fd1, int fd2);
    int blcr_pipe_peek(int read_end, size_t cap, long *n);
    int blcr_timerfd_create(int clockid, int flags);
    int blcr_timerfd_settime(int fd, int flags, int64_t vs, int64_t vns, int64_t is,
                             int64_t ins, uint64_t ticks);
    int blcr_signalfd(uint64_t mask, int flags);
    struct blcr_stub_plan {
        int want_pid;
        int nmoves;
        const int *moves;
        int nepoll;
        const int64_t *epoll;
        int cwd_fd;
        int umask;
        int nlimits;
        const int64_t *limits;
        const uint64_t *sigactions;
        uint64_t code_addr;
        uint64_t code_len;
        int err_fd;
        int new_pidns;
        int session;
        const char *exec_path;
        char *const *exec_argv;
    };
    int blcr_spawn_stub(const struct blcr_stub_plan *plan, int *init);
    int blcr_release(int tid, const void *regs, const void *xstate, size_t xlen, uint64_t mask,
                     int stop);
    """
)
HERE = Path(__file__).resolve().parent
# the units of the module, one concern each (blcr.h says which holds what); relative to where the
# build runs, as setuptools wants them
UNITS = [os.path.relpath(HERE / f"{unit}.c") for unit in ["ptrace", "stub", "fds", "codec", "dump", "memory", "regs"]]

ffibuilder.set_source(
    "crs.plugins.blcr._native",
    '#include "blcr.h"',
    sources=UNITS,
    include_dirs=[str(HERE), str(HERE.parents[2] / "native")],  # blcr.h; crc32c.h, lzpack.h ...
    extra_compile_args=["-msse4.2", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
