/* Pieces of a restore stub shared by the blcr restorer's stub (crs/plugins/blcr/native/stub.c, a
 * child of the restoring tool, libc at hand) and the mtcp restart program
 * (crs/plugins/mtcp/native/restart/, no libc at all): system calls without libc, the failure
 * report both write on the restoring tool's error pipe ("what:errno", which
 * crs/plugins/blcr/restore.py reads), and the signal actions both set from the same layout.
 * Freestanding: no libc call, no errno. x86-64 Linux only. */
#ifndef PYCRS_STUB_H
#define PYCRS_STUB_H

#include <stddef.h>
#include <stdint.h>

/* A system call: its result, or -errno. */
static inline long stub_syscall6(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* stub_syscall(NR, args...): up to six arguments, of any integer or pointer type */
#define stub_syscall(n, ...) stub_syscall_n(n, __VA_ARGS__, 0, 0, 0, 0, 0, 0)
#define stub_syscall_n(n, a, b, c, d, e, f, ...)                                            \
    stub_syscall6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

#define STUB_NR_rt_sigaction 13

/* "what:errno" in msg, what cut at max_what bytes, the errno (either sign) in decimal; msg has
 * room for max_what + 22 bytes. Returns the length (no terminating NUL). */
static inline size_t stub_failure(char *msg, const char *what, size_t max_what, long err)
{
    size_t n = 0;
    while (what[n] && n < max_what) {
        msg[n] = what[n];
        n++;
    }
    msg[n++] = ':';
    char digits[24];
    int d = 0;
    unsigned long e = (unsigned long)(err < 0 ? -err : err);
    do {
        digits[d++] = (char)('0' + e % 10);
        e /= 10;
    } while (e);
    while (d)
        msg[n++] = digits[--d];
    return n;
}

/* Signal actions 1 to 64 from 64 x (handler, flags, restorer, mask) words, as the kernel's
 * rt_sigaction takes them (SIGKILL and SIGSTOP left alone). Returns 0, or -errno of the first
 * signal below 32 refused (the set stops there); a real-time signal refused is passed over. */
static inline long stub_set_sigactions(const uint64_t *actions)
{
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == 9 || sig == 19) /* SIGKILL, SIGSTOP */
            continue;
        long r = stub_syscall(STUB_NR_rt_sigaction, sig, actions + 4 * (sig - 1), 0, 8);
        if (r < 0 && sig < 32)
            return r;
    }
    return 0;
}

#endif
