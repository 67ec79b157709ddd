/* Native side of the blcr component (the cffi module crs.plugins.blcr._native): ptrace control
 * of another process, system calls injected into it, bulk page transfer with CRC-32C checksums,
 * and the stub a restore starts from. This header is what its units share, and what the cffi
 * module's wrappers see (build_blcr.py declares the same functions to Python); read it first.
 *
 * Every function returns 0 (or a count) on success and -errno on failure; the Python side turns
 * that into an error that names the process and the step. x86-64 Linux only.
 *
 * The units, one concern each:
 *   ptrace.c   seizing threads, waiting for their stops, system calls injected into them
 *   regs.c     a thread's state: registers, XSAVE area, signal mask, queued signals, rseq,
 *              robust list; letting a restored thread go
 *   memory.c   another process's memory: reads, writes, the runs of pages to save (pagemap)
 *   dump.c     pages.img: the dump pipeline with its CRCs, and the check of a snapshot's CRCs
 *   codec.c    lzp1 compression (crs/native/lzpack.h) for tests, tools and the restorer
 *   fds.c      descriptors: taken from another process, compared, pipes peeked, timerfds and
 *              signalfds made again
 *   stub.c     the restore stub: the child a restore starts from (descriptors, cwd, limits,
 *              signal actions, a new PID namespace), stopped for the tracer or exec'ing the
 *              mtcp restart program
 *   userns.c   restores without privilege: a user namespace's ID maps, the capabilities a
 *              restorer keeps or drops there, and the probe whether the kernel allows it
 * build_blcr.py hands this header to cffi as the module's API, less its preprocessor lines and
 * the lines that start with BLCR_INTERNAL: the internal functions shared between units, one line
 * each, hidden (the module exports only the API). Keep the rest to what cffi's cdef parses.
 */
#ifndef PYCRS_BLCR_H
#define PYCRS_BLCR_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define BLCR_INTERNAL __attribute__((visibility("hidden")))
#define PAGE 4096UL

/* -- ptrace.c ------------------------------------------------------------------------------- */

int blcr_seize(int tid);
int blcr_detach(int tid, int sig);
int blcr_inject(int tid, uint64_t insn, long nr, long a1, long a2, long a3, long a4, long a5,
                long a6, long *result);
int blcr_wait_new_thread(int tid);
/* waitpid(tid, __WALL) until it stops: 0, -ESRCH when it ended, another -errno */
BLCR_INTERNAL int blcr_wait_stop(int tid, int *status);

/* -- regs.c --------------------------------------------------------------------------------- */

int blcr_get_regs(int tid, void *regs);
int blcr_set_regs(int tid, const void *regs);
long blcr_get_xstate(int tid, void *buf, size_t len);
int blcr_set_xstate(int tid, const void *buf, size_t len);
int blcr_get_sigmask(int tid, uint64_t *mask);
int blcr_set_sigmask(int tid, uint64_t mask);
long blcr_peek_siginfo(int tid, int shared, void *buf, int max);
int blcr_get_rseq(int tid, void *conf, size_t len);
int blcr_get_robust_list(int tid, uint64_t *head, uint64_t *len);
int blcr_release(int tid, const void *regs, const void *xstate, size_t xlen, uint64_t mask,
                 int stop);

/* -- memory.c ------------------------------------------------------------------------------- */

long blcr_read_mem(int pid, uint64_t addr, void *buf, size_t len);
long blcr_write_mem(int pid, uint64_t addr, const void *buf, size_t len);
long blcr_scan_pages(int pagemap_fd, uint64_t start, uint64_t end, int private_file,
                     uint64_t *runs, long max);

/* -- dump.c --------------------------------------------------------------------------------- */

uint32_t blcr_crc32c(const void *p, size_t n);
long blcr_dump_runs(int pid, int mem_fd, int out_fd, const uint64_t *runs, long nruns,
                    uint64_t *pos, uint32_t *crcs, long ncrcs, uint64_t chunk);

/* -- codec.c -------------------------------------------------------------------------------- */

size_t blcr_lzp_bound(size_t n);
long blcr_lzp_compress(const void *src, size_t n, void *dst, size_t cap, int level);
long blcr_lzp_decompress(const void *src, size_t n, void *dst, size_t cap);
long blcr_lzp_unpack(int in_fd, int out_fd, uint64_t raw_total, uint64_t *frame);

/* -- fds.c ---------------------------------------------------------------------------------- */

int blcr_pidfd_getfd(int pidfd, int fd);
int blcr_kcmp_file(int pid, int fd1, int fd2);
int blcr_kcmp_epoll_target(int pid, int fd, int epfd, int tfd, int toff);
int blcr_pipe_peek(int read_end, size_t cap, long *n);
int blcr_timerfd_create(int clockid, int flags);
int blcr_timerfd_settime(int fd, int flags, int64_t vs, int64_t vns, int64_t is, int64_t ins,
                         uint64_t ticks);
int blcr_signalfd(uint64_t mask, int flags);

/* -- stub.c --------------------------------------------------------------------------------- */

struct blcr_stub_plan {
    int want_pid;               /* PID to take (0: any) */
    int nmoves;
    const int *moves;           /* (our fd, its fd, cloexec) triples */
    int nepoll;
    const int64_t *epoll;       /* (epoll fd, target fd, events, data, holder fd) quints */
    int cwd_fd;
    int umask;
    int nlimits;
    const int64_t *limits;      /* (resource, soft, hard) triples */
    const uint64_t *sigactions; /* 64 x (handler, flags, restorer, mask); handler 0 = default */
    uint64_t code_addr;         /* where the stub puts its syscall page */
    uint64_t code_len;
    int err_fd;                 /* write end of the pipe for a failure in the child */
    int new_pidns;              /* restore into a fresh PID namespace, under an init of ours */
    int new_userns;             /* that namespace in a new user namespace (callers who may not
                                 * choose PIDs here): uid and gid map to themselves */
    int uid, gid;               /* ours, for the maps of that user namespace */
    int init_keep_fd;           /* a descriptor the init keeps open (-1: none): the launcher's,
                                 * which a restored MPI rank takes from its parent */
    int status_fd;              /* the init writes the process's raw wait status here (-1: none) */
    int session;                /* 1: lead a new session, 2: lead a new process group */
    const char *exec_path;      /* run this program in the stub instead of stopping for a tracer */
    char *const *exec_argv;
};

int blcr_spawn_stub(const struct blcr_stub_plan *plan, int *init);

/* -- userns.c ------------------------------------------------------------------------------- */

/* 0 when this caller may create a user namespace with a PID namespace and a /proc of its own
 * (what a restore without privilege needs), else -errno; *step names what failed */
int blcr_probe_userns(int uid, int gid, const char **step);
/* in a new user namespace: map uid and gid to themselves (they are the creator's) */
BLCR_INTERNAL int blcr_userns_map(int uid, int gid, const char **step);
/* keep CAP_CHECKPOINT_RESTORE across the next exec (an ambient capability): the mtcp restart
 * program chooses its threads' IDs with it */
BLCR_INTERNAL int blcr_keep_restore_cap(void);
/* drop every capability of the calling thread */
BLCR_INTERNAL int blcr_drop_caps(void);

#endif
