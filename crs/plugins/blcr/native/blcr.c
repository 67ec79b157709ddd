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
