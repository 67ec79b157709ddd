/* pycrs-mtcp-restart: the restart program of the mtcp component.
 *
 * A static program with no libc, no ptrace and no Python, linked at a fixed address
 * (RESTART_AREA, 16 TiB) that a process image does not use. opal-restart prepares everything
 * that needs a real library (descriptors, the PID through clone3's set_tid, cwd, limits, the
 * session), writes a plan (crs/plugins/mtcp/restart.py: a flat array of 64-bit words) and execs
 * this program in the process being restored, with the plan's descriptor as its argument.
 *
 * The program then becomes the process in the image: it moves to a stack of its own, unmaps
 * everything outside its area (the stack, vDSO and vvar the kernel gave it), maps the vDSO and
 * every mapping of the image at its address, reads the pages straight into place (checking a
 * CRC-32C per MiB as it goes, or decompressing lzp1 frames), sets protections, mm fields, signal
 * actions and timers, then creates every thread with its TID and lets each one jump to the
 * capture point the kernel recorded for it (callee-saved registers, stack pointer, return
 * address, 1 as the capture's result), with every signal blocked: a thread held in the kernel's
 * signal handler gets its own mask back from its signal frame when it returns from the handler.
 *
 * The program cannot unmap itself while it runs, so it leaves that to the restored kernel: it
 * fills the kernel's resume record (struct mtcp_resume in resume.h, at the address image.json
 * gives) with its area, the descriptors to close and the number of threads to wait for; the
 * restored manager thread waits until every thread is back in the kernel's code, unmaps the
 * area, and tells opal-restart on the error pipe that the process runs ("OK").
 *
 * A failure before the threads are let go is written to the error pipe as "what:errno" and the
 * program exits 127. x86-64 Linux only.
 */
#include <stddef.h>
#include <stdint.h>

#include "crc32c.h"
#include "lzpack.h"
#include "stub.h"

#include "resume.h"

#define PAGE 4096UL
#define STACK_SIZE (256UL << 10)
#define THREAD_STACK (64UL << 10)
#define PLAN_MAGIC 0x3150527372637970ULL   /* "pycrsRP1" (restart.py) */
#define TOP 0x7ffffffff000UL
#define THREAD_FLAGS (0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000) /* VM FS FILES SIGHAND THREAD SYSVSEM */
#define CLONE_CHILD_CLEARTID 0x00200000
#define CLONE_CHILD_SETTID 0x01000000
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_PRIVATE 128

/* system call numbers and flags (x86-64), as in the kernel's uapi headers */
enum {
    NR_read = 0, NR_write = 1, NR_close = 3, NR_fstat = 5, NR_mmap = 9, NR_mprotect = 10,
    NR_munmap = 11, NR_rt_sigaction = 13, NR_pread64 = 17, NR_madvise = 28, NR_setitimer = 38,
    NR_exit = 60, NR_prctl = 157, NR_arch_prctl = 158, NR_sched_setaffinity = 203,
    NR_set_tid_address = 218, NR_timer_create = 222, NR_timer_settime = 223,
    NR_exit_group = 231, NR_setpriority = 141, NR_personality = 135, NR_mlock = 149,
    NR_sigaltstack = 131, NR_set_robust_list = 273, NR_rseq = 334, NR_clone3 = 435,
    NR_futex = 202, NR_fcntl = 72, NR_nanosleep = 35,
};
#define PROT_RW 3
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20
#define MAP_FIXED 0x10
#define MAP_FIXED_NOREPLACE 0x100000
#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_MAP_VDSO_64 0x2003
#define PR_SET_NAME 15
#define PR_SET_MM 35
#define PR_SET_MM_MAP 14
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define SS_DISABLE 2
#define EINTR 4
#define EEXIST 17
#define EINVAL 22
#define EIO 5
#define ENOMEM 12
#define EPROTO 71
#define EBADMSG 74

typedef uint64_t u64;
typedef int64_t i64;

/* -- the plan (layout written by restart.py; every field is 64 bits) ------------------------ */

struct plan {
    u64 magic, size;
    i64 pid, err_fd, pages_fd, codec; /* codec: 0 raw pages, 1 lzp1 frames */
    u64 pages_size, chunk, ncrcs, crcs;       /* CRC-32C per chunk of pages.img, at offset crcs */
    u64 vdso_base, resume, stop, personality;
    u64 area, area_len, scratch, scratch_len;  /* our own area, and free room inside it */
    i64 exe_fd;
    u64 mm[11], auxv, auxv_len;
    u64 nvmas, vmas, nruns, runs, sigactions, itimers, ntimers, timers, nthreads, threads;
    u64 nclose, close;     /* descriptors of ours to close before the threads run */
    u64 ncloexec, cloexec; /* the process's close-on-exec descriptors (our exec kept them) */
};

struct plan_vma {
    u64 start, end, prot_load, prot, flags;
    i64 fd;
    u64 offset, nadvice, advice[4], lock;
};

struct plan_timer {
    i64 id, clockid, signo, notify, target, value, interval[2], remaining[2];
};

struct plan_thread {
    i64 tid;
    u64 fs_base, gs_base, tid_address, robust_head, robust_len;
    u64 alt_sp, alt_flags, alt_size, rseq_ptr, rseq_size, rseq_sig;
    u64 comm[2];
    u64 naffinity, affinity[16];
    i64 nice, has_nice;
    u64 rbx, rbp, r12, r13, r14, r15, rsp, rip; /* the capture point */
    u64 xstate, xstate_len;                     /* offset in the plan (64-byte aligned) */
};

/* -- system calls, and the few library functions the compiler may call ---------------------- */

#define sys stub_syscall /* sys(NR, args...), as everywhere in this program */

void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n >= 8) {
        u64 v;
        __builtin_memcpy(&v, q, 8); /* one move: never a call */
        __builtin_memcpy(p, &v, 8);
        p += 8, q += 8, n -= 8;
    }
    while (n--)
        *p++ = *q++;
    return d;
}

void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}

static const struct plan *P;
static i64 err_fd = -1;

/* "what:errno" to the error pipe (opal-restart names the errno), then exit. */
static void __attribute__((noreturn)) die(const char *what, long err)
{
    char msg[256];
    size_t n = stub_failure(msg, what, 200, err);
    if (err_fd >= 0)
        sys(NR_write, err_fd, msg, n);
    for (;;)
        sys(NR_exit_group, 127);
}

static long must(long r, const char *what)
{
    if (r < 0 && r > -4096)
        die(what, r);
    return r;
}

/* clone3 for a thread: the child runs fn(arg) on the new stack and never returns (below). */
long clone3_thread(void *args, size_t size, void (*fn)(const void *), const void *arg);

/* -- pages ---------------------------------------------------------------------------------- */

/* Where the next logical page bytes go: a cursor over the image's runs (address order). */
struct cursor {
    const u64 *runs; /* (address, pages) pairs */
    u64 nruns, i, off;
};

static u64 cursor_room(struct cursor *c, unsigned char **at)
{
    while (c->i < c->nruns && c->off == c->runs[2 * c->i + 1] * PAGE) {
        c->i++;
        c->off = 0;
    }
    if (c->i == c->nruns)
        return 0;
    *at = (unsigned char *)(c->runs[2 * c->i] + c->off);
    return c->runs[2 * c->i + 1] * PAGE - c->off;
}

/* The CRC of the pages.img bytes seen so far, checked at every chunk boundary. */
struct check {
    const uint32_t *crcs;
    u64 ncrcs, chunk, pos;
    uint32_t crc;
};

static void check_bytes(struct check *k, const unsigned char *p, u64 n)
{
    while (n) {
        u64 take = crc32c_chunk_step(&k->crc, k->pos, k->chunk, p, n);
        k->pos += take;
        p += take;
        n -= take;
        if (k->pos % k->chunk == 0 || k->pos == P->pages_size) {
            u64 idx = (k->pos - 1) / k->chunk;
            if (idx >= k->ncrcs || k->crcs[idx] != k->crc)
                die("pages.img does not match its CRC (the snapshot is corrupted)", EBADMSG);
        }
    }
}

static void read_at(void *dst, u64 n, u64 off)
{
    unsigned char *p = dst;
    while (n) {
        long got = sys(NR_pread64, P->pages_fd, p, n > (1UL << 30) ? 1UL << 30 : n, off);
        if (got == -EINTR)
            continue;
        must(got, "reading pages.img");
        if (got == 0)
            die("pages.img is truncated", EIO);
        p += got, n -= (u64)got, off += (u64)got;
    }
}

/* Raw pages are read straight into place while a second thread checks their CRCs behind the
 * reads (on two CPUs the check then costs no time): a ring of the pieces read, in file order; a
 * piece of length 0 ends it. */
#define RING 64
static struct {
    u64 addr[RING], len[RING];
    uint32_t produced, consumed;
    int32_t tid; /* the checker's; the kernel clears it when the checker has ended */
    struct check *k;
} Q;

static void futex_wait(uint32_t *w, uint32_t v) { sys(NR_futex, w, FUTEX_WAIT | FUTEX_PRIVATE, v, 0); }
static void futex_wake(uint32_t *w) { sys(NR_futex, w, FUTEX_WAKE | FUTEX_PRIVATE, 0x7fffffff); }

static void checker_main(const void *arg)
{
    (void)arg;
    for (uint32_t c = 0;; c++) {
        uint32_t p;
        while ((p = __atomic_load_n(&Q.produced, __ATOMIC_ACQUIRE)) == c)
            futex_wait(&Q.produced, p);
        u64 n = Q.len[c % RING];
        if (n)
            check_bytes(Q.k, (const unsigned char *)Q.addr[c % RING], n);
        __atomic_store_n(&Q.consumed, c + 1, __ATOMIC_RELEASE);
        futex_wake(&Q.consumed);
        if (!n)
            for (;;)
                sys(NR_exit, 0);
    }
}

static void checked(u64 addr, u64 n)
{
    uint32_t p = Q.produced, c;
    while (p - (c = __atomic_load_n(&Q.consumed, __ATOMIC_ACQUIRE)) >= RING)
        futex_wait(&Q.consumed, c);
    Q.addr[p % RING] = addr;
    Q.len[p % RING] = n;
    __atomic_store_n(&Q.produced, p + 1, __ATOMIC_RELEASE);
    futex_wake(&Q.produced);
}

static void load_raw(struct cursor *c, struct check *k, unsigned char *checker_stack)
{
    Q.k = k;
    Q.tid = -1;
    u64 args[11] = {0};
    args[0] = THREAD_FLAGS | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
    args[2] = (u64)&Q.tid; /* child_tid */
    args[5] = (u64)checker_stack;
    args[6] = THREAD_STACK;
    must(clone3_thread(args, sizeof args, checker_main, 0), "starting the CRC checker (clone3)");
    unsigned char *at;
    u64 room, pos = 0;
    while ((room = cursor_room(c, &at))) {
        u64 n = k->chunk - pos % k->chunk;
        if (n > room)
            n = room;
        if (pos + n > P->pages_size)
            die("pages.img is truncated", EIO);
        read_at(at, n, pos);
        checked((u64)at, n);
        c->off += n;
        pos += n;
    }
    checked(0, 0);
    for (int32_t t; (t = __atomic_load_n(&Q.tid, __ATOMIC_ACQUIRE)) != 0;)
        sys(NR_futex, &Q.tid, FUTEX_WAIT, t, 0); /* the kernel's wake at exit is not private */
    if (pos != P->pages_size || k->pos != pos)
        die("pages.img is longer than the image's mappings", EPROTO);
}

/* Compressed pages (lzp1 frames, crs/native/lzpack.h): the file is read a CRC chunk at a time,
 * checked, and cut into frames; each frame is decompressed and copied to its runs. */
struct reader {
    unsigned char *chunk, *payload, *out;
    u64 len, at;
    struct check *k;
};

static void take(struct reader *r, unsigned char *dst, u64 n)
{
    while (n) {
        if (r->at == r->len) {
            u64 left = P->pages_size - r->k->pos;
            if (!left)
                die("pages.img is truncated", EIO);
            r->len = left < P->chunk ? left : P->chunk;
            r->at = 0;
            read_at(r->chunk, r->len, r->k->pos);
            check_bytes(r->k, r->chunk, r->len);
        }
        u64 t = r->len - r->at < n ? r->len - r->at : n;
        memcpy(dst, r->chunk + r->at, t);
        r->at += t, dst += t, n -= t;
    }
}

static void load_compressed(struct cursor *c, struct check *k, unsigned char *buffers)
{
    struct reader r = {buffers, buffers + LZP_FRAME, buffers + LZP_FRAME + lzp_bound(LZP_FRAME),
                       0, 0, k};
    unsigned char *at;
    u64 room;
    while ((room = cursor_room(c, &at))) {
        unsigned char head[LZP_FRAME_HEADER];
        uint32_t raw_len, payload;
        int raw;
        take(&r, head, sizeof head);
        if (lzp_frame_header(head, &raw_len, &payload, &raw) < 0)
            die("pages.img: a malformed frame header (the snapshot is corrupted)", EBADMSG);
        take(&r, raw ? r.out : r.payload, payload);
        if (!raw && lzp_decompress(r.payload, payload, r.out, raw_len) != (long)raw_len)
            die("pages.img: a frame does not decompress (the snapshot is corrupted)", EBADMSG);
        for (u64 done = 0; done < raw_len;) {
            if (!(room = cursor_room(c, &at)))
                die("pages.img holds more pages than the image's mappings", EPROTO);
            u64 n = raw_len - done < room ? raw_len - done : room;
            memcpy(at, r.out + done, n);
            c->off += n, done += n;
        }
    }
    if (k->pos != P->pages_size || r.at != r.len)
        die("pages.img is longer than the image's mappings", EPROTO);
}

/* -- threads -------------------------------------------------------------------------------- */

/* Let a thread go: callee-saved registers and stack of its capture point, 1 as the result. */
void resume_jump(const u64 *regs) __attribute__((noreturn));
__asm__(".text\n"
        ".type resume_jump,@function\n"
        "resume_jump:\n"
        "  movq 0(%rdi), %rbx\n"
        "  movq 8(%rdi), %rbp\n"
        "  movq 16(%rdi), %r12\n"
        "  movq 24(%rdi), %r13\n"
        "  movq 32(%rdi), %r14\n"
        "  movq 40(%rdi), %r15\n"
        "  movq 48(%rdi), %rsp\n"
        "  movq 56(%rdi), %rcx\n"
        "  movl $1, %eax\n"
        "  jmp *%rcx\n"
        ".size resume_jump, .-resume_jump\n");

/* clone3 for a thread: the child runs fn(arg) on the new stack and never returns. */
__asm__(".text\n"
        ".type clone3_thread,@function\n"
        "clone3_thread:\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  movq %rdx, %r12\n"
        "  movq %rcx, %r13\n"
        "  movl $435, %eax\n"
        "  syscall\n"
        "  testq %rax, %rax\n"
        "  jnz 1f\n"
        "  movq %r13, %rdi\n"
        "  andq $-16, %rsp\n"
        "  callq *%r12\n"
        "  ud2\n"
        "1:\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  ret\n"
        ".size clone3_thread, .-clone3_thread\n");

/* Per-thread kernel state, then the jump. Runs in the thread itself. */
static void __attribute__((noreturn)) become(const struct plan_thread *t)
{
    must(sys(NR_arch_prctl, ARCH_SET_FS, t->fs_base), "setting a thread's fs base");
    if (t->gs_base)
        must(sys(NR_arch_prctl, ARCH_SET_GS, t->gs_base), "setting a thread's gs base");
    sys(NR_set_tid_address, t->tid_address);
    if (t->robust_head)
        must(sys(NR_set_robust_list, t->robust_head, t->robust_len), "set_robust_list");
    if (!(t->alt_flags & SS_DISABLE)) {
        u64 ss[3] = {t->alt_sp, t->alt_flags, t->alt_size}; /* stack_t: sp, int flags, size */
        must(sys(NR_sigaltstack, ss, 0), "sigaltstack");
    }
    if (t->rseq_ptr)
        must(sys(NR_rseq, t->rseq_ptr, t->rseq_size, 0, t->rseq_sig), "rseq registration");
    sys(NR_prctl, PR_SET_NAME, t->comm);
    if (t->naffinity) /* on the CPUs this machine has (restart.py intersects) */
        sys(NR_sched_setaffinity, 0, t->naffinity * 8, t->affinity);
    if (t->has_nice) /* a nicer value than allowed here is left as it is */
        sys(NR_setpriority, 0 /* PRIO_PROCESS */, 0, t->nice);
    if (t->xstate_len) {
        const unsigned char *x = (const unsigned char *)P + t->xstate;
        __asm__ volatile("xrstor64 (%0)" : : "r"(x), "a"(~0U), "d"(~0U) : "memory");
    }
    resume_jump(&t->rbx);
}

static void thread_main(const void *t) { become(t); }

static void start_thread(const struct plan_thread *t, unsigned char *stack)
{
    i64 tid = t->tid;
    u64 args[11] = {0};
    args[0] = THREAD_FLAGS;
    args[5] = (u64)stack;   /* stack */
    args[6] = THREAD_STACK; /* stack_size */
    args[8] = (u64)&tid;    /* set_tid */
    args[9] = 1;            /* set_tid_size */
    long got = clone3_thread(args, sizeof args, thread_main, t);
    /* the ID may still be the CRC checker's for a moment after it ended */
    for (int tries = 0; got == -EEXIST && tries < 1000; tries++) {
        u64 ts[2] = {0, 1000000};
        sys(NR_nanosleep, ts, 0);
        got = clone3_thread(args, sizeof args, thread_main, t);
    }
    if (got != tid)
        die("creating a thread with its thread ID (clone3)", got < 0 ? got : EEXIST);
}

/* -- process state -------------------------------------------------------------------------- */

static void map_memory(void)
{
    const struct plan_vma *v = (const void *)((const char *)P + P->vmas);
    for (u64 i = 0; i < P->nvmas; i++, v++) {
        long got = sys(NR_mmap, v->start, v->end - v->start, v->prot_load, v->flags | MAP_FIXED_NOREPLACE,
                       v->fd, v->offset);
        if (got != (long)v->start)
            die("mapping a region of the image at its address", got < 0 ? got : EEXIST);
        for (u64 a = 0; a < v->nadvice && a < 4; a++)
            sys(NR_madvise, v->start, v->end - v->start, v->advice[a]); /* advice only */
        if (v->lock)
            sys(NR_mlock, v->start, v->end - v->start);
    }
}

static void protect_memory(void)
{
    const struct plan_vma *v = (const void *)((const char *)P + P->vmas);
    for (u64 i = 0; i < P->nvmas; i++, v++)
        if (v->prot != v->prot_load)
            must(sys(NR_mprotect, v->start, v->end - v->start, v->prot), "mprotect");
}

/* mm fields and auxv; the executable is left to the restored kernel (kept in r for it), as the
 * kernel will not swap it while this program's file is mapped */
static void process_state(struct mtcp_resume *r)
{
    u64 *mm = r->mm_map; /* struct prctl_mm_map: 11 fields, auxv, auxv_size and exe_fd */
    for (int i = 0; i < 11; i++)
        mm[i] = P->mm[i];
    if (P->auxv_len > sizeof r->auxv)
        die("the image's auxiliary vector is too long", EINVAL);
    memcpy(r->auxv, (const char *)P + P->auxv, P->auxv_len);
    mm[11] = (u64)r->auxv;
    mm[12] = P->auxv_len | (0xffffffffULL << 32);
    must(sys(NR_prctl, PR_SET_MM, PR_SET_MM_MAP, mm, sizeof r->mm_map, 0), "prctl(PR_SET_MM_MAP)");
    sys(NR_personality, P->personality);
    must(stub_set_sigactions((const void *)((const char *)P + P->sigactions)),
         "restoring signal actions (rt_sigaction)");
    const i64 *it = (const void *)((const char *)P + P->itimers);
    for (int w = 0; w < 3; w++, it += 4)
        if (it[2] || it[3])
            must(sys(NR_setitimer, w, it, 0), "setitimer");
}

static void posix_timers(void)
{
    if (!P->ntimers)
        return;
    int by_id = sys(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0) == 0;
    const struct plan_timer *t = (const void *)((const char *)P + P->timers);
    for (u64 i = 0; i < P->ntimers; i++, t++) {
        u64 sev[8] = {0};
        sev[0] = (u64)t->value;
        sev[1] = (u64)(uint32_t)t->signo | (u64)(uint32_t)t->notify << 32;
        sev[2] = t->notify == 4 ? (u64)(uint32_t)t->target : 0;
        int id = -1;
        must(sys(NR_timer_create, t->clockid, sev, &id), "timer_create");
        if (id != t->id)
            die(by_id ? "a POSIX timer came back with another ID"
                      : "a POSIX timer came back with another ID (this kernel cannot choose timer IDs)",
                EEXIST);
        if (t->remaining[0] || t->remaining[1]) {
            i64 spec[4] = {t->interval[0], t->interval[1], t->remaining[0], t->remaining[1]};
            must(sys(NR_timer_settime, id, 0, spec, 0), "timer_settime");
        }
    }
    if (by_id)
        sys(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
}

/* -- the program ---------------------------------------------------------------------------- */

static unsigned char stack[STACK_SIZE] __attribute__((aligned(64), used));

static i64 parse_fd(const char *s)
{
    i64 v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 1 << 20)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static void __attribute__((noreturn, used)) restart_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    i64 plan_fd = argc == 2 ? parse_fd(argv[1]) : -1;
    if (plan_fd < 0)
        for (;;)
            sys(NR_exit_group, 2); /* run by opal-restart only, never by hand */
    u64 st[18]; /* struct stat: st_size at word 6 */
    if (sys(NR_fstat, plan_fd, st) < 0 || st[6] < sizeof(struct plan))
        for (;;)
            sys(NR_exit_group, 2);
    /* the plan goes where opal-restart reserved room for it: at the start of our scratch */
    u64 plan_len = (st[6] + PAGE - 1) & ~(PAGE - 1);
    struct plan head;
    if (sys(NR_pread64, plan_fd, &head, sizeof head, 0) != (long)sizeof head || head.magic != PLAN_MAGIC)
        for (;;)
            sys(NR_exit_group, 2);
    err_fd = head.err_fd;
    long at = sys(NR_mmap, head.scratch, plan_len, 1 /* PROT_READ */, MAP_PRIVATE | MAP_FIXED_NOREPLACE,
                  plan_fd, 0);
    if (at != (long)head.scratch)
        die("mapping the restore plan", at < 0 ? at : EEXIST);
    P = (const struct plan *)at;
    sys(NR_close, plan_fd);
    u64 stacks_len = (P->nthreads + 1) * THREAD_STACK;
    if (P->size != st[6] || P->scratch_len < plan_len + stacks_len + (4UL << 20))
        die("the restore plan is inconsistent", EINVAL);
    unsigned char *stacks = (unsigned char *)at + plan_len;
    long got = sys(NR_mmap, stacks, stacks_len, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                   -1, 0);
    if (got != (long)stacks)
        die("allocating thread stacks", got < 0 ? got : EEXIST);

    /* nothing of ours outside the area: the kernel's stack, vDSO and vvar go */
    must(sys(NR_munmap, 0, P->area), "unmapping below the restart area");
    must(sys(NR_munmap, P->area + P->area_len, TOP - P->area - P->area_len),
         "unmapping above the restart area");
    if (P->vdso_base)
        must(sys(NR_arch_prctl, ARCH_MAP_VDSO_64, P->vdso_base), "mapping the vDSO at its address");

    map_memory();
    struct cursor c = {(const u64 *)((const char *)P + P->runs), P->nruns, 0, 0};
    struct check k = {(const uint32_t *)((const char *)P + P->crcs), P->ncrcs, P->chunk, 0, 0};
    if (P->codec == 0) {
        load_raw(&c, &k, stacks + P->nthreads * THREAD_STACK);
    } else {
        if (P->chunk != LZP_FRAME)
            die("the restore plan is inconsistent", EINVAL);
        u64 len = (2 * LZP_FRAME + lzp_bound(LZP_FRAME) + PAGE - 1) & ~(PAGE - 1);
        unsigned char *buffers = stacks + stacks_len;
        got = sys(NR_mmap, buffers, len, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                  -1, 0);
        if (got != (long)buffers)
            die("allocating buffers", got < 0 ? got : EEXIST);
        load_compressed(&c, &k, buffers);
    }
    protect_memory();
    /* the kernel's record: what the restored manager finishes for us */
    struct mtcp_resume *r = (struct mtcp_resume *)P->resume;
    if (!P->resume || r->magic != RESUME_MAGIC)
        die("the image has no mtcp resume record where image.json says", EPROTO);
    process_state(r);
    const i64 *cl = (const void *)((const char *)P + P->close);
    for (u64 i = 0; i < P->nclose; i++)
        sys(NR_close, cl[i]);
    const i64 *ce = (const void *)((const char *)P + P->cloexec);
    for (u64 i = 0; i < P->ncloexec; i++)
        must(sys(NR_fcntl, ce[i], 2 /* F_SETFD */, 1 /* FD_CLOEXEC */), "setting close-on-exec");
    const struct plan_thread *t = (const void *)((const char *)P + P->threads);
    const struct plan_thread *me = 0;
    r->area = P->area;
    r->area_len = P->area_len;
    r->exe_fd = P->exe_fd;
    r->err_fd = P->err_fd;
    r->stop = (i64)P->stop;
    r->expect = (i64)P->nthreads - 1; /* every thread but the manager comes back to the handler */
    r->back = 0;
    for (u64 i = 0; i < P->nthreads; i++) {
        if (t[i].tid == P->pid) {
            me = &t[i];
            continue;
        }
        start_thread(&t[i], stacks + i * THREAD_STACK);
    }
    posix_timers(); /* now that their target threads exist; signals stay blocked everywhere */
    if (!me)
        die("the image has no main thread", EPROTO);
    become(me);
}

/* entry: argc at the stack pointer; move to our own stack before the kernel's goes away */
__asm__(".text\n"
        ".globl _start\n"
        ".type _start,@function\n"
        "_start:\n"
        "  movq %rsp, %rdi\n"
        "  leaq stack+262144(%rip), %rsp\n"
        "  andq $-16, %rsp\n"
        "  callq restart_main\n"
        "  ud2\n"
        ".size _start, .-_start\n");
