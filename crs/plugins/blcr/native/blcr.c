/* blcr module: all of it, for now (blcr.h). */
#include "blcr.h"

#include <fcntl.h>
#include <linux/elf.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crc32c.h"
#include "fdio.h"
#include "lzpack.h"
#include "pagemap.h"
#include "stub.h"

#define SYSCALL_STOP (SIGTRAP | 0x80)

/* -- ptrace control ---------------------------------------------------------------------------- */

int blcr_wait_stop(int tid, int *status)
{
    for (;;) {
        int r = waitpid(tid, status, __WALL);
        if (r == tid)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -errno : -ECHILD;
    }
    if (WIFEXITED(*status) || WIFSIGNALED(*status))
        return -ESRCH;
    return 0;
}

/* Seize one thread and bring it to a ptrace stop. Returns 1 when the thread was already in a
 * group stop (the process had been stopped with SIGSTOP), 0 otherwise. */
int blcr_seize(int tid)
{
    if (ptrace(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACESYSGOOD) < 0)
        return -errno;
    if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0)
        return -errno;
    for (;;) {
        int st, r = blcr_wait_stop(tid, &st);
        if (r < 0)
            return r;
        if ((st >> 16) == PTRACE_EVENT_STOP) {
            int sig = WSTOPSIG(st);
            return (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) ? 1 : 0;
        }
        /* A signal on its way in before our stop: let it be delivered as it would have been
         * (its siginfo intact), and wait for the interrupt. */
        if (ptrace(PTRACE_CONT, tid, 0, (void *)(long)WSTOPSIG(st)) < 0)
            return -errno;
    }
}

int blcr_detach(int tid, int sig)
{
    return ptrace(PTRACE_DETACH, tid, 0, (void *)(long)sig) < 0 ? -errno : 0;
}

int blcr_get_regs(int tid, void *regs)
{
    return ptrace(PTRACE_GETREGS, tid, 0, regs) < 0 ? -errno : 0;
}

int blcr_set_regs(int tid, const void *regs)
{
    return ptrace(PTRACE_SETREGS, tid, 0, regs) < 0 ? -errno : 0;
}

long blcr_get_xstate(int tid, void *buf, size_t len)
{
    struct iovec iov = {buf, len};
    if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov) < 0)
        return -errno;
    return (long)iov.iov_len;
}

int blcr_set_xstate(int tid, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return ptrace(PTRACE_SETREGSET, tid, (void *)NT_X86_XSTATE, &iov) < 0 ? -errno : 0;
}

int blcr_get_sigmask(int tid, uint64_t *mask)
{
    return ptrace(PTRACE_GETSIGMASK, tid, (void *)8, mask) < 0 ? -errno : 0;
}

int blcr_set_sigmask(int tid, uint64_t mask)
{
    return ptrace(PTRACE_SETSIGMASK, tid, (void *)8, &mask) < 0 ? -errno : 0;
}

/* Queued signals of a thread (shared: of the whole process), 128 bytes of siginfo each, without
 * removing them. */
long blcr_peek_siginfo(int tid, int shared, void *buf, int max)
{
    struct { uint64_t off; uint32_t flags; int32_t nr; } args = {0, shared ? 1 : 0, max};
    long n = ptrace(PTRACE_PEEKSIGINFO, tid, &args, buf);
    return n < 0 ? -errno : n;
}

int blcr_get_rseq(int tid, void *conf, size_t len)
{
    long n = ptrace(0x420f /* PTRACE_GET_RSEQ_CONFIGURATION */, tid, (void *)len, conf);
    return n < 0 ? -errno : (int)n;
}

int blcr_get_robust_list(int tid, uint64_t *head, uint64_t *len)
{
    void *h = 0;
    size_t l = 0;
    if (syscall(SYS_get_robust_list, tid, &h, &l) < 0)
        return -errno;
    *head = (uint64_t)h;
    *len = l;
    return 0;
}

/* Run one system call in a stopped thread: point it at a `syscall` instruction (at `insn`), let
 * it through the syscall entry and exit stops, take the result and put its registers back.
 * The caller blocks every signal of the thread first, so that none is delivered meanwhile. */
int blcr_inject(int tid, uint64_t insn, long nr, long a1, long a2, long a3, long a4, long a5,
                long a6, long *result)
{
    struct user_regs_struct saved, r;
    int st, stops = 0, err;
    if (ptrace(PTRACE_GETREGS, tid, 0, &saved) < 0)
        return -errno;
    r = saved;
    r.rip = insn;
    r.rax = nr;
    r.orig_rax = (unsigned long)-1; /* no syscall restart on the way out of this stop */
    r.rdi = a1; r.rsi = a2; r.rdx = a3; r.r10 = a4; r.r8 = a5; r.r9 = a6;
    if (ptrace(PTRACE_SETREGS, tid, 0, &r) < 0)
        return -errno;
    while (stops < 2) {
        if (ptrace(PTRACE_SYSCALL, tid, 0, 0) < 0)
            return -errno;
        if ((err = blcr_wait_stop(tid, &st)) < 0)
            return err;
        if (WSTOPSIG(st) == SYSCALL_STOP)
            stops++;
        else if ((st >> 16) == 0 && WSTOPSIG(st) != SIGTRAP)
            return -EINTR; /* every signal is blocked while we hold a process: a fault */
        /* ptrace events (a clone we asked for) need nothing but going on */
    }
    if (ptrace(PTRACE_GETREGS, tid, 0, &r) < 0)
        return -errno;
    *result = (long)r.rax;
    if (ptrace(PTRACE_SETREGS, tid, 0, &saved) < 0)
        return -errno;
    return 0;
}

/* The thread a clone we injected created: it starts stopped, already traced by us. */
int blcr_wait_new_thread(int tid)
{
    int st;
    return blcr_wait_stop(tid, &st);
}

long blcr_read_mem(int pid, uint64_t addr, void *buf, size_t len)
{
    struct iovec l = {buf, len}, r = {(void *)addr, len};
    ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
    return n < 0 ? -errno : n;
}

long blcr_write_mem(int pid, uint64_t addr, const void *buf, size_t len)
{
    struct iovec l = {(void *)buf, len}, r = {(void *)addr, len};
    ssize_t n = process_vm_writev(pid, &l, 1, &r, 1, 0);
    return n < 0 ? -errno : n;
}

/* -- pages ------------------------------------------------------------------------------------ */

struct runs_out {
    uint64_t *runs;
    long n, max;
};

static long put_run(void *arg, uint64_t addr, uint64_t pages)
{
    struct runs_out *o = arg;
    if (o->n >= o->max)
        return -ENOSPC;
    o->runs[2 * o->n] = addr;
    o->runs[2 * o->n + 1] = pages;
    o->n++;
    return 0;
}

/* Runs of pages of [start, end) that hold data of the process's own (crs/native/pagemap.h).
 * Writes (address, pages) pairs; returns the number of runs, or -ENOSPC when `max` is too
 * small. */
long blcr_scan_pages(int pagemap_fd, uint64_t start, uint64_t end, int private_file,
                     uint64_t *runs, long max)
{
    struct runs_out o = {runs, 0, max};
    long r = pagemap_runs(pagemap_fd, start, end, private_file, put_run, &o);
    return r < 0 ? r : o.n;
}

uint32_t blcr_crc32c(const void *p, size_t n) { return crc32c(0, p, n); }

#define IO_BUF (8UL << 20)

/* The dump is a pipeline: this thread copies pages out of the process and checksums them into
 * one of SLOTS buffers while a writer thread writes the previous ones and starts their
 * write-back at once (sync_file_range), so the disk works all along instead of at the final
 * fsync. (O_DIRECT was measured slower: one synchronous write at a time leaves the disk idle.) */
#define SLOTS 4

struct writer {
    int fd;
    off_t off;
    unsigned char *bufs;
    size_t len[SLOTS];
    long head, tail; /* slots [tail, head) are full */
    int done;
    long err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->head == w->tail && !w->done)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->head == w->tail) {
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        long slot = w->tail % SLOTS;
        int failed = w->err != 0;
        pthread_mutex_unlock(&w->mu);
        long e = 0;
        if (!failed) {
            e = fdio_write_all(w->fd, w->bufs + slot * IO_BUF, w->len[slot]);
            if (!e && w->off >= 0)
                sync_file_range(w->fd, w->off, (off_t)w->len[slot], SYNC_FILE_RANGE_WRITE);
            w->off += (off_t)w->len[slot];
        }
        pthread_mutex_lock(&w->mu);
        if (e && !w->err)
            w->err = e;
        w->tail++;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

/* Copy the pages of `runs` ((address, pages, unreadable) triples) from the process to `out_fd`,
 * one CRC-32C per `chunk` bytes of output counted from `*pos`: crcs[i] covers output bytes
 * [i*chunk, (i+1)*chunk). Unreadable runs (PROT_NONE) are read through `mem_fd`
 * (/proc/PID/mem). */
long blcr_dump_runs(int pid, int mem_fd, int out_fd, const uint64_t *runs, long nruns,
                    uint64_t *pos, uint32_t *crcs, long ncrcs, uint64_t chunk)
{
    struct writer w;
    memset(&w, 0, sizeof w);
    w.fd = out_fd;
    w.off = lseek(out_fd, 0, SEEK_CUR);
    w.bufs = mmap(NULL, SLOTS * IO_BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                  -1, 0);
    if (w.bufs == MAP_FAILED)
        return -errno;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    pthread_t writer;
    long err = -pthread_create(&writer, NULL, writer_main, &w);
    if (err) {
        munmap(w.bufs, SLOTS * IO_BUF);
        return err;
    }
    for (long i = 0; i < nruns && !err; i++) {
        uint64_t addr = runs[3 * i], left = runs[3 * i + 1] * PAGE;
        int unreadable = (int)runs[3 * i + 2];
        while (left && !err) {
            size_t n = left < IO_BUF ? left : IO_BUF;
            pthread_mutex_lock(&w.mu);
            while (w.head - w.tail == SLOTS)
                pthread_cond_wait(&w.cv, &w.mu);
            err = w.err;
            pthread_mutex_unlock(&w.mu);
            if (err)
                break;
            unsigned char *buf = w.bufs + (w.head % SLOTS) * IO_BUF;
            ssize_t got;
            if (unreadable) {
                got = pread(mem_fd, buf, n, (off_t)addr);
            } else {
                struct iovec l = {buf, n}, r = {(void *)addr, n};
                got = process_vm_readv(pid, &l, 1, &r, 1, 0);
            }
            if (got < 0 || (size_t)got != n) {
                err = got < 0 ? -errno : -EFAULT;
                break;
            }
            for (size_t done = 0; done < n;) { /* along chunk boundaries of the output */
                if ((long)(*pos / chunk) >= ncrcs) {
                    err = -ENOSPC;
                    break;
                }
                size_t take = crc32c_chunk_step(&crcs[*pos / chunk], *pos, chunk, buf + done,
                                                n - done);
                done += take;
                *pos += take;
            }
            pthread_mutex_lock(&w.mu);
            w.len[w.head % SLOTS] = n;
            w.head++;
            pthread_cond_broadcast(&w.cv);
            pthread_mutex_unlock(&w.mu);
            addr += n;
            left -= n;
        }
    }
    pthread_mutex_lock(&w.mu);
    w.done = 1;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(writer, NULL);
    if (!err)
        err = w.err;
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    munmap(w.bufs, SLOTS * IO_BUF);
    return err;
}

/* Check the CRC-32C of every `chunk` bytes of the file `fd` (`size` bytes), reading it through
 * a mapping (no copy). Returns 0, or -EBADMSG with the failing chunk in *bad_chunk. Runs with
 * the GIL released, beside the stub reading the same file into the restored process. */
long blcr_verify_chunks(int fd, uint64_t size, const uint32_t *crcs, long ncrcs, uint64_t chunk,
                        uint64_t *bad_chunk)
{
    if (size == 0)
        return 0;
    if ((long)((size + chunk - 1) / chunk) > ncrcs) {
        *bad_chunk = (uint64_t)ncrcs;
        return -EBADMSG;
    }
    unsigned char *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED)
        return -errno;
    madvise(m, size, MADV_SEQUENTIAL);
    long err = 0;
    for (uint64_t off = 0, i = 0; off < size; off += chunk, i++) {
        uint64_t n = size - off < chunk ? size - off : chunk;
        if (crc32c(0, m + off, n) != crcs[i]) {
            *bad_chunk = i;
            err = -EBADMSG;
            break;
        }
        if (off >= 64 * chunk) /* done with it: do not let a big image crowd the page cache */
            madvise(m + off - 64 * chunk, chunk, MADV_DONTNEED);
    }
    munmap(m, size);
    return err;
}

/* -- compressed images (lzpack) ------------------------------------------------------------- */

static void *lzp_workspace(void)
{
    static void *ws;
    if (!ws) {
        void *p = mmap(NULL, LZP_WORKSPACE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        if (!__sync_bool_compare_and_swap(&ws, NULL, p))
            munmap(p, LZP_WORKSPACE);
    }
    return ws;
}

size_t blcr_lzp_bound(size_t n) { return lzp_bound(n); }

/* One block (for tests and tools): the compressed size, 0 when it does not fit in cap. Not
 * reentrant (one workspace). */
long blcr_lzp_compress(const void *src, size_t n, void *dst, size_t cap, int level)
{
    void *ws = lzp_workspace();
    if (!ws)
        return -ENOMEM;
    return (long)lzp_compress(src, n, dst, cap, level, ws);
}

long blcr_lzp_decompress(const void *src, size_t n, void *dst, size_t cap)
{
    long r = lzp_decompress(src, n, dst, cap);
    return r < 0 ? -EBADMSG : r;
}

/* The frames of a compressed pages.img (in_fd, from its start) into the logical page stream
 * (out_fd, written in order): the bytes produced, which must be raw_total; -EBADMSG for a frame
 * that is malformed (or goes on past raw_total) and -ENODATA for a file that ends early, with
 * the frame's index in *frame; another -errno when reading or writing fails. */
long blcr_lzp_unpack(int in_fd, int out_fd, uint64_t raw_total, uint64_t *frame)
{
    size_t cap = lzp_bound(LZP_FRAME);
    unsigned char *in = mmap(NULL, cap + LZP_FRAME, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (in == MAP_FAILED)
        return -errno;
    unsigned char *out = in + cap;
    uint64_t done = 0;
    long err = 0;
    for (*frame = 0;; (*frame)++) {
        uint8_t h[LZP_FRAME_HEADER];
        ssize_t got = read(in_fd, h, sizeof h);
        if (got < 0 && errno == EINTR) {
            (*frame)--;
            continue;
        }
        if (got < 0) {
            err = -errno;
            break;
        }
        if (got == 0) {
            err = done == raw_total ? 0 : -ENODATA;
            break;
        }
        if (got < (ssize_t)sizeof h) {
            int e = fdio_read_full(in_fd, h + got, sizeof h - (size_t)got);
            if (e) {
                err = e == -ENODATA ? -ENODATA : e;
                break;
            }
        }
        uint32_t raw_len, payload;
        int raw;
        if (lzp_frame_header(h, &raw_len, &payload, &raw) < 0 ||
            (raw_len != LZP_FRAME && done + raw_len != raw_total)) {
            err = -EBADMSG;
            break;
        }
        if (done + raw_len > raw_total) {
            err = -EBADMSG;
            break;
        }
        err = fdio_read_full(in_fd, raw ? out : in, payload);
        if (err)
            break;
        if (!raw && lzp_decompress(in, payload, out, LZP_FRAME) != (long)raw_len) {
            err = -EBADMSG;
            break;
        }
        err = fdio_write_all(out_fd, out, raw_len);
        if (err)
            break;
        done += raw_len;
    }
    munmap(in, cap + LZP_FRAME);
    return err ? err : (long)done;
}

/* -- descriptors ------------------------------------------------------------------------------ */

int blcr_pidfd_getfd(int pidfd, int fd)
{
    long r = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    return r < 0 ? -errno : (int)r;
}

/* 0 when both descriptors of `pid` refer to one open file description. */
int blcr_kcmp_file(int pid, int fd1, int fd2)
{
    long r = syscall(SYS_kcmp, pid, pid, 0 /* KCMP_FILE */, fd1, fd2);
    return r < 0 ? -errno : (int)r;
}

/* Duplicate the unread content of a pipe, without consuming it, into a new pipe of ours; returns
 * the read end of the copy (or -errno) and the number of bytes in *n. */
int blcr_pipe_peek(int read_end, size_t cap, long *n)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    if (cap && fcntl(p[1], F_SETPIPE_SZ, (int)cap) < 0) {
        int e = -errno;
        close(p[0]);
        close(p[1]);
        return e;
    }
    ssize_t t = tee(read_end, p[1], cap ? cap : 1 << 20, SPLICE_F_NONBLOCK);
    close(p[1]);
    if (t < 0 && errno != EAGAIN) {
        int e = -errno;
        close(p[0]);
        return e;
    }
    *n = t < 0 ? 0 : t;
    return p[0];
}

int blcr_timerfd_create(int clockid, int flags)
{
    long r = syscall(SYS_timerfd_create, clockid, flags);
    return r < 0 ? -errno : (int)r;
}

int blcr_timerfd_settime(int fd, int flags, int64_t vs, int64_t vns, int64_t is, int64_t ins,
                         uint64_t ticks)
{
    struct { int64_t is, ins, vs, vns; } t = {is, ins, vs, vns};
    if (syscall(SYS_timerfd_settime, fd, flags, &t, NULL) < 0)
        return -errno;
    if (ticks && ioctl(fd, _IOW('T', 0, uint64_t), &ticks) < 0)
        return -errno;
    return 0;
}

int blcr_signalfd(uint64_t mask, int flags)
{
    long r = syscall(SYS_signalfd4, -1, &mask, 8, flags);
    return r < 0 ? -errno : (int)r;
}

/* -- the restore stub ------------------------------------------------------------------------- */

static void stub_fail(int fd, const char *what, int err)
{
    char msg[160];
    size_t n = stub_failure(msg, what, 120, err);
    (void)!write(fd, msg, n);
    _exit(127);
}

/* In the child: take the restored process's descriptors, cwd, umask, limits and signal
 * dispositions, map the syscall page, then stop for the tracer. Never returns. */
static void stub_child(const struct blcr_stub_plan *p, int traceme)
{
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    if (traceme && ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
        stub_fail(p->err_fd, "ptrace(TRACEME)", errno);
    /* lift every source above every target first, so no dup3 overwrites one still needed */
    int top = p->err_fd;
    for (int i = 0; i < p->nmoves; i++) {
        if (p->moves[3 * i] > top) top = p->moves[3 * i];
        if (p->moves[3 * i + 1] > top) top = p->moves[3 * i + 1];
    }
    if (p->cwd_fd > top) top = p->cwd_fd;
    int base = top + 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)(base + p->nmoves + 2)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int errfd = fcntl(p->err_fd, F_DUPFD_CLOEXEC, base);
    if (errfd < 0)
        stub_fail(p->err_fd, "lift error pipe", errno);
    int cwd = fcntl(p->cwd_fd, F_DUPFD_CLOEXEC, base);
    if (cwd < 0)
        stub_fail(errfd, "lift cwd", errno);
    int *lifted = alloca(sizeof(int) * (size_t)(p->nmoves + 1));
    for (int i = 0; i < p->nmoves; i++) {
        lifted[i] = fcntl(p->moves[3 * i], F_DUPFD_CLOEXEC, base);
        if (lifted[i] < 0)
            stub_fail(errfd, "lift descriptor", errno);
    }
    /* close everything below base, then place each descriptor */
    if (syscall(SYS_close_range, 0, (unsigned)base - 1, 0) < 0)
        stub_fail(errfd, "close_range", errno);
    for (int i = 0; i < p->nmoves; i++) {
        if (dup3(lifted[i], p->moves[3 * i + 1], p->moves[3 * i + 2] ? O_CLOEXEC : 0) < 0)
            stub_fail(errfd, "place descriptor", errno);
    }
    for (int i = 0; i < p->nepoll; i++) {
        struct { uint32_t events; uint64_t data; } __attribute__((packed)) ev = {
            (uint32_t)p->epoll[4 * i + 2], (uint64_t)p->epoll[4 * i + 3]};
        if (syscall(SYS_epoll_ctl, (int)p->epoll[4 * i], 1 /* ADD */, (int)p->epoll[4 * i + 1],
                    &ev) < 0)
            stub_fail(errfd, "epoll_ctl", errno);
    }
    if (fchdir(cwd) < 0)
        stub_fail(errfd, "fchdir", errno);
    if (p->session == 1 && setsid() < 0)
        stub_fail(errfd, "setsid", errno);
    if (p->session == 2 && setpgid(0, 0) < 0)
        stub_fail(errfd, "setpgid", errno);
    umask((mode_t)p->umask);
    long r = stub_set_sigactions(p->sigactions);
    if (r < 0)
        stub_fail(errfd, "rt_sigaction", (int)-r);
    if (!p->exec_path) {
        void *code = mmap((void *)p->code_addr, p->code_len, PROT_READ | PROT_WRITE | PROT_EXEC,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (code == MAP_FAILED || (uint64_t)code != p->code_addr)
            stub_fail(errfd, "map syscall page", code == MAP_FAILED ? errno : EEXIST);
        ((unsigned char *)code)[0] = 0x0f; /* syscall */
        ((unsigned char *)code)[1] = 0x05;
        ((unsigned char *)code)[2] = 0xcc; /* int3 */
    }
    for (int i = 0; i < p->nlimits; i++) {
        struct rlimit r = {(rlim_t)p->limits[3 * i + 1], (rlim_t)p->limits[3 * i + 2]};
        if (setrlimit((int)p->limits[3 * i], &r) < 0)
            stub_fail(errfd, "setrlimit", errno);
    }
    if (p->exec_path) {
        /* the same descriptors, marked to close at the exec, so that a failing exec can still
         * say so on the error pipe; signal dispositions are the restart program's to set */
        if (syscall(SYS_close_range, (unsigned)base, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) < 0)
            stub_fail(errfd, "close_range above the descriptors", errno);
        char *envp[] = {NULL};
        execve(p->exec_path, p->exec_argv, envp);
        stub_fail(errfd, "exec of the restart program", errno);
    }
    /* every descriptor from base up: the lifted copies, cwd, the error pipe (close-on-exec is
     * not enough: nothing is exec'd; the parent sees EOF), and whatever the restoring tool had
     * open there, which the restored process never had */
    if (syscall(SYS_close_range, (unsigned)base, ~0U, 0) < 0)
        stub_fail(errfd, "close_range above the descriptors", errno);
    syscall(SYS_kill, syscall(SYS_getpid), SIGSTOP);
    _exit(126); /* not reached: the tracer takes the process over at the stop */
}

static long clone_with_pid(pid_t *want, uint64_t flags)
{
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    if (*want > 0) {
        args.set_tid = (uint64_t)want;
        args.set_tid_size = 1;
    }
    return syscall(SYS_clone3, &args, sizeof args);
}

/* PID 1 of a fresh namespace: starts the stub with its PID there, drops every descriptor it
 * inherited (a pipe end kept open here would keep the restored process from seeing EOF), and
 * lives as long as the restored process, exiting with its status (128+signal if killed). */
static void pidns_init(const struct blcr_stub_plan *p)
{
    /* a /proc of the new namespace (in a mount namespace of its own that still receives the
     * host's mounts), so that the process sees its own PID and TIDs there */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        stub_fail(p->err_fd, "mount --make-rslave /", errno);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        stub_fail(p->err_fd, "mount /proc", errno);
    pid_t want = p->want_pid;
    long stub = clone_with_pid(&want, 0);
    if (stub < 0)
        stub_fail(p->err_fd, "clone3 in the new PID namespace", errno);
    if (stub == 0)
        stub_child(p, 0);
    syscall(SYS_close_range, 0, ~0U, 0);
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, 0);
        if (r < 0 && errno != EINTR)
            _exit(127);
        if (r == stub && (WIFEXITED(st) || WIFSIGNALED(st)))
            _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
}

/* The stub's PID here, once the init of its namespace has started it and it has stopped. */
static int find_stopped_child(int init, int any_state)
{
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", init, init);
    for (int tries = 0; tries < 10000; tries++) {
        int st;
        if (waitpid(init, &st, WNOHANG) == init)
            return -ECHILD; /* init ended: the child failed and said why on the error pipe */
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = 0;
            int pid = atoi(buf);
            char stat[256];
            snprintf(path, sizeof path, "/proc/%d/stat", pid);
            fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                n = read(fd, stat, sizeof stat - 1);
                close(fd);
                char *end = n > 0 ? (stat[n] = 0, strrchr(stat, ')')) : NULL;
                if (end && (any_state || end[2] == 'T'))
                    return pid;
            }
            snprintf(path, sizeof path, "/proc/%d/task/%d/children", init, init);
        }
        usleep(1000);
    }
    return -ETIMEDOUT;
}

static int spawn_stub(const struct blcr_stub_plan *plan, int *init);

/* Fork the stub (with the PID asked for, through clone3's set_tid) and wait until it stops
 * under our trace (or, with exec_path, until it runs: it then execs that program). Returns its PID, or -errno; a failure inside the child is written to
 * plan->err_fd. With new_pidns, *init is the namespace's first process, the one to wait for. */
int blcr_spawn_stub(const struct blcr_stub_plan *plan, int *init)
{
    /* the child starts with every signal blocked: one sent to the restored PID this early
     * stays queued for the restored process instead of meeting our handlers */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = spawn_stub(plan, init);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

static int spawn_stub(const struct blcr_stub_plan *plan, int *init)
{
    pid_t want = plan->want_pid;
    int st, r;
    long pid;
    *init = 0;
    if (plan->new_pidns) {
        pid_t any = 0;
        long first = clone_with_pid(&any, CLONE_NEWPID | CLONE_NEWNS);
        if (first < 0)
            return -errno;
        if (first == 0)
            pidns_init(plan);
        *init = (int)first;
        pid = find_stopped_child((int)first, plan->exec_path != NULL);
        if (pid < 0 || plan->exec_path)
            return (int)pid;
        if (ptrace(PTRACE_SEIZE, pid, 0,
                   PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE) < 0)
            return -errno;
        if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0)
            return -errno;
        return (r = blcr_wait_stop((int)pid, &st)) < 0 ? r : (int)pid;
    }
    pid = clone_with_pid(&want, 0);
    if (pid < 0)
        return -errno;
    if (pid == 0)
        stub_child(plan, !plan->exec_path);
    if (plan->exec_path)
        return (int)pid; /* it says how it went on the error pipe */
    if ((r = blcr_wait_stop((int)pid, &st)) < 0)
        return r;
    if (WSTOPSIG(st) != SIGSTOP) {
        kill((pid_t)pid, SIGKILL);
        waitpid((pid_t)pid, &st, __WALL);
        return -EPROTO;
    }
    if (ptrace(PTRACE_SETOPTIONS, pid, 0,
               PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE) < 0)
        return -errno;
    return (int)pid;
}

/* Let a thread of the restored process go: registers, extended state and mask first. */
int blcr_release(int tid, const void *regs, const void *xstate, size_t xlen, uint64_t mask,
                 int stop)
{
    int r;
    if (xlen && (r = blcr_set_xstate(tid, xstate, xlen)) < 0)
        return r;
    if ((r = blcr_set_regs(tid, regs)) < 0)
        return r;
    if ((r = blcr_set_sigmask(tid, mask)) < 0)
        return r;
    return ptrace(PTRACE_DETACH, tid, 0, (void *)(long)(stop ? SIGSTOP : 0)) < 0 ? -errno : 0;
}
