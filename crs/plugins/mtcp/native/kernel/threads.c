/* mtcp kernel: the threads. The manager stops every other thread with the kernel's signal
 * (tgkill); in the handler each records what only it can read about itself (fs/gs bases, signal
 * mask, alternate stack, tid address, robust list, rseq area, name, nice, affinity, XSAVE
 * state), records its capture point and waits on a futex until the manager releases it, on the
 * first pass and after a restore alike. Also each thread's record in image.json. */
#include "kernel.h"

#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/user.h>

#define STOP_TIMEOUT_MS 10000
#define ARCH_GET_FS 0x1003
#define ARCH_GET_GS 0x1004
#define RSEQ_SIG 0x53053053

/* glibc 2.35+: where this thread's rseq area is, relative to the thread pointer */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

__asm__(".text\n"
        ".globl mtcp_capture\n"
        ".hidden mtcp_capture\n"
        ".type mtcp_capture,@function\n"
        "mtcp_capture:\n"
        "  movq %rbx, 0(%rdi)\n"
        "  movq %rbp, 8(%rdi)\n"
        "  movq %r12, 16(%rdi)\n"
        "  movq %r13, 24(%rdi)\n"
        "  movq %r14, 32(%rdi)\n"
        "  movq %r15, 40(%rdi)\n"
        "  leaq 8(%rsp), %rax\n"
        "  movq %rax, 48(%rdi)\n"
        "  movq (%rsp), %rax\n"
        "  movq %rax, 56(%rdi)\n"
        "  xorl %eax, %eax\n"
        "  ret\n"
        ".size mtcp_capture, .-mtcp_capture\n");

static void xsave_here(unsigned char *area)
{
    memset(area + 512, 0, 64); /* the XSAVE header: XSAVE writes XSTATE_BV only */
    uint32_t lo = (uint32_t)mtcp.xmask, hi = (uint32_t)(mtcp.xmask >> 32);
    __asm__ volatile("xsave64 (%0)" : : "r"(area), "a"(lo), "d"(hi) : "memory");
}

void mtcp_record_self(struct slot *s)
{
    uint64_t v = 0;
    syscall(SYS_arch_prctl, ARCH_GET_FS, &s->fs_base);
    syscall(SYS_arch_prctl, ARCH_GET_GS, &s->gs_base);
    uint16_t seg;
    __asm__ volatile("mov %%cs, %0" : "=r"(seg));
    s->cs = seg;
    __asm__ volatile("mov %%ss, %0" : "=r"(seg));
    s->ss = seg;
    __asm__ volatile("mov %%fs, %0" : "=r"(seg));
    s->fs = seg;
    __asm__ volatile("mov %%gs, %0" : "=r"(seg));
    s->gs = seg;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &s->sigmask, 8);
    v = 0;
    if (prctl(PR_GET_TID_ADDRESS, &v, 0, 0, 0) == 0)
        s->tid_address = v;
    void *head = NULL;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, 0, &head, &len) == 0) {
        s->robust_head = (uint64_t)head;
        s->robust_len = len;
    }
    s->rseq_ptr = s->rseq_size = 0;
    if (&__rseq_offset && &__rseq_size && __rseq_size) {
        uint64_t area = s->fs_base + (uint64_t)__rseq_offset;
        int32_t cpu = *(volatile int32_t *)(area + 4); /* cpu_id: -1 when not registered */
        if (cpu >= 0) {
            s->rseq_ptr = area;
            s->rseq_size = __rseq_size < 32 ? 32 : __rseq_size;
        }
    }
    stack_t ss;
    if (syscall(SYS_sigaltstack, NULL, &ss) == 0) {
        s->alt_sp = (uint64_t)ss.ss_sp;
        s->alt_size = ss.ss_size;
        s->alt_flags = ss.ss_flags & ~SS_ONSTACK;
    } else {
        s->alt_flags = SS_DISABLE;
    }
    memset(s->comm, 0, sizeof s->comm);
    prctl(PR_GET_NAME, s->comm, 0, 0, 0);
    errno = 0;
    long pr = syscall(SYS_getpriority, PRIO_PROCESS, 0); /* 20 - nice */
    s->nice = pr >= 0 ? 20 - (int)pr : 0;
    long n = syscall(SYS_sched_getaffinity, 0, sizeof s->affinity, s->affinity);
    s->ncpus_words = n > 0 ? (int)(n / 8) : 0;
    xsave_here(s->xstate);
}

static void wait_go(void)
{
    while (__atomic_load_n(&mtcp.go, __ATOMIC_ACQUIRE) == 0)
        sys_futex(&mtcp.go, FUTEX_WAIT_PRIVATE, 0, NULL);
}

void mtcp_on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    int saved = errno;
    if (!mtcp.active || si->si_code != SI_TKILL || si->si_pid != mtcp.pid) {
        errno = saved;
        return; /* not ours, or late: nothing to do */
    }
    int tid = gettid_();
    struct slot *s = NULL;
    for (int i = 0; i < mtcp.nslots; i++)
        if (mtcp.slots[i].tid == tid && mtcp.slots[i].parked == 0) {
            s = &mtcp.slots[i];
            break;
        }
    if (!s) {
        errno = saved;
        return;
    }
    mtcp_record_self(s);
    if (mtcp_capture(&s->ctx) == 0) {
        __atomic_store_n(&s->parked, 1, __ATOMIC_RELEASE);
        __atomic_add_fetch(&mtcp.parked, 1, __ATOMIC_ACQ_REL);
        sys_futex(&mtcp.parked, FUTEX_WAKE_PRIVATE, 1, NULL);
    } else {
        /* restored: off the restart program's code and stack from here on */
        mtcp_resume_thread_back();
    }
    /* first time: held until the image is written; restored: until the manager is back */
    wait_go();
    errno = saved;
}

static int thread_alive(int tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d", tid);
    return access(path, F_OK) == 0;
}

static void sigblk_of(int tid, char *out, size_t n)
{
    char path[64];
    struct buf b = {0};
    snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    out[0] = 0;
    char saved[sizeof mtcp.err];
    memcpy(saved, mtcp.err, sizeof saved);
    if (mtcp_read_file(path, &b) == 0) {
        char *l = strstr(b.p, "SigBlk:");
        if (l) {
            l += 7;
            while (*l == ' ' || *l == '\t')
                l++;
            size_t i = 0;
            while (l[i] && l[i] != '\n' && i + 1 < n) {
                out[i] = l[i];
                i++;
            }
            out[i] = 0;
        }
    }
    memcpy(mtcp.err, saved, sizeof saved);
    mtcp_buf_free(&b);
}

void mtcp_release_threads(void)
{
    __atomic_store_n(&mtcp.go, 1, __ATOMIC_RELEASE);
    sys_futex(&mtcp.go, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
    mtcp.active = 0;
}

int mtcp_stop_threads(void)
{
    int tids[MAX_THREADS];
    double deadline = now() + STOP_TIMEOUT_MS / 1000.0;
    for (;;) {
        int n = mtcp_list_numbers("/proc/self/task", tids, MAX_THREADS);
        if (n < 0)
            return -1;
        int fresh = 0;
        for (int i = 0; i < n; i++) {
            int tid = tids[i], known = tid == mtcp.manager_tid;
            for (int j = 0; j < mtcp.nslots && !known; j++)
                known = mtcp.slots[j].tid == tid;
            if (known)
                continue;
            if (mtcp.nslots >= MAX_THREADS)
                return mtcp_fail("more than %d threads", MAX_THREADS);
            struct slot *s = &mtcp.slots[mtcp.nslots];
            memset(s, 0, sizeof *s);
            s->tid = tid;
            s->xstate = mtcp.pool + (size_t)mtcp.nslots * XSTATE_MAX;
            mtcp.nslots++;
            fresh++;
            if (syscall(SYS_tgkill, mtcp.pid, tid, mtcp.sig) < 0) {
                if (errno == ESRCH) {
                    s->parked = 2;
                    continue;
                }
                return mtcp_fail("signalling thread %d (tgkill): %s", tid, errname(errno));
            }
        }
        if (!fresh && n > 0)
            return 0; /* every thread there is is held: none can start another */
        /* wait until every signalled thread is held (or gone) */
        for (;;) {
            int want = 0, got = __atomic_load_n(&mtcp.parked, __ATOMIC_ACQUIRE);
            for (int j = 0; j < mtcp.nslots; j++) {
                struct slot *s = &mtcp.slots[j];
                if (__atomic_load_n(&s->parked, __ATOMIC_ACQUIRE) == 0 && !thread_alive(s->tid))
                    s->parked = 2;
                want += s->parked != 2;
            }
            if (got >= want)
                break;
            if (now() > deadline) {
                for (int j = 0; j < mtcp.nslots; j++)
                    if (__atomic_load_n(&mtcp.slots[j].parked, __ATOMIC_ACQUIRE) == 0) {
                        char blk[40];
                        sigblk_of(mtcp.slots[j].tid, blk, sizeof blk);
                        return mtcp_fail("thread %d did not stop within %d s (blocked signals %s; "
                                         "the kernel uses signal %d)", mtcp.slots[j].tid,
                                         STOP_TIMEOUT_MS / 1000, blk[0] ? blk : "?", mtcp.sig);
                    }
            }
            struct timespec ts = {0, 20 * 1000 * 1000};
            sys_futex(&mtcp.parked, FUTEX_WAIT_PRIVATE, got, &ts);
        }
    }
}

int mtcp_put_thread(struct buf *b, struct slot *s)
{
    struct user_regs_struct r;
    memset(&r, 0, sizeof r);
    r.rbx = s->ctx.rbx;
    r.rbp = s->ctx.rbp;
    r.r12 = s->ctx.r12;
    r.r13 = s->ctx.r13;
    r.r14 = s->ctx.r14;
    r.r15 = s->ctx.r15;
    r.rsp = s->ctx.rsp;
    r.rip = s->ctx.rip;
    r.rax = 1; /* the capture's result: restarted */
    r.orig_rax = (unsigned long long)-1;
    r.eflags = 0x202;
    r.cs = s->cs;
    r.ss = s->ss;
    r.fs_base = s->fs_base;
    r.gs_base = s->gs_base;
    r.fs = s->fs;
    r.gs = s->gs;
    if (mtcp_sep(b) < 0 || mtcp_puts(b, "{") < 0 || mtcp_kv_i64(b, "tid", s->tid) < 0 ||
        mtcp_key(b, "regs") < 0 || mtcp_puts(b, "\"") < 0 || mtcp_put_hex(b, &r, sizeof r) < 0 ||
        mtcp_puts(b, "\"") < 0 || mtcp_key(b, "xstate") < 0 || mtcp_puts(b, "\"") < 0 ||
        mtcp_put_hex(b, s->xstate, mtcp.xsize) < 0 || mtcp_puts(b, "\"") < 0 ||
        mtcp_kv_u64(b, "sigmask", s->sigmask) < 0 || mtcp_kv_raw(b, "pending", "[]") < 0 ||
        mtcp_key(b, "altstack") < 0 || mtcp_puts(b, "[") < 0 || mtcp_put_u64(b, s->alt_sp) < 0 ||
        mtcp_puts(b, ",") < 0 || mtcp_put_i64(b, s->alt_flags) < 0 || mtcp_puts(b, ",") < 0 ||
        mtcp_put_u64(b, s->alt_size) < 0 || mtcp_puts(b, "]") < 0 ||
        mtcp_kv_u64(b, "tid_address", s->tid_address) < 0 || mtcp_key(b, "robust_list") < 0 ||
        mtcp_puts(b, "[") < 0 || mtcp_put_u64(b, s->robust_head) < 0 || mtcp_puts(b, ",") < 0 ||
        mtcp_put_u64(b, s->robust_len) < 0 || mtcp_puts(b, "]") < 0 || mtcp_key(b, "rseq") < 0)
        return -1;
    if (s->rseq_ptr) {
        if (mtcp_puts(b, "[") < 0 || mtcp_put_u64(b, s->rseq_ptr) < 0 || mtcp_puts(b, ",") < 0 ||
            mtcp_put_u64(b, s->rseq_size) < 0 || mtcp_puts(b, ",") < 0 ||
            mtcp_put_u64(b, RSEQ_SIG) < 0 || mtcp_puts(b, "]") < 0)
            return -1;
    } else if (mtcp_puts(b, "null") < 0) {
        return -1;
    }
    if (mtcp_key(b, "comm") < 0 || mtcp_puts(b, "\"") < 0 ||
        mtcp_put_hex(b, s->comm, strlen(s->comm)) < 0 || mtcp_puts(b, "\"") < 0 ||
        mtcp_key(b, "affinity") < 0 || mtcp_puts(b, "[") < 0)
        return -1;
    for (int w = 0; w < s->ncpus_words; w++)
        for (int bit = 0; bit < 64; bit++)
            if (s->affinity[w] >> bit & 1)
                if (mtcp_sep(b) < 0 || mtcp_put_u64(b, (uint64_t)(w * 64 + bit)) < 0)
                    return -1;
    return mtcp_puts(b, "]") < 0 || mtcp_kv_i64(b, "nice", s->nice) < 0 ? -1 : mtcp_puts(b, "}");
}
