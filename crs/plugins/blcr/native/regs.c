/* blcr module: a stopped thread's state, read and set through ptrace: general registers, the
 * XSAVE area (FPU and vector state), the signal mask, queued signals (peeked, not taken), the
 * rseq registration and the robust futex list; and letting a restored thread go with all of it
 * in place. */
#include "blcr.h"

#include <linux/elf.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

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
