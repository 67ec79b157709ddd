/* pycrs-mtcp-restart: the entry point. _start moves to a stack of the program's own; the plan
 * (its descriptor in argv[1]) is mapped at the start of the scratch room opal-restart reserved;
 * everything outside the program's area goes; then the image's memory, its pages, its process
 * state, its threads, in that order. A failure is reported as "what:errno" (stub.h) on the error
 * pipe, and the program exits 127. The whole picture is in restart.h. */
#include "restart.h"

const struct plan *rs_plan;
static i64 err_fd = -1;

/* "what:errno" to the error pipe (opal-restart names the errno), then exit. */
void __attribute__((noreturn)) rs_die(const char *what, long err)
{
    char msg[256];
    size_t n = stub_failure(msg, what, 200, err);
    if (err_fd >= 0)
        sys(NR_write, err_fd, msg, n);
    for (;;)
        sys(NR_exit_group, 127);
}

long rs_must(long r, const char *what)
{
    if (r < 0 && r > -4096)
        rs_die(what, r);
    return r;
}

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
        rs_die("mapping the restore plan", at < 0 ? at : EEXIST);
    const struct plan *P = rs_plan = (const struct plan *)at;
    sys(NR_close, plan_fd);
    u64 stacks_len = (P->nthreads + 1) * THREAD_STACK;
    if (P->size != st[6] || P->scratch_len < plan_len + stacks_len + (4UL << 20))
        rs_die("the restore plan is inconsistent", EINVAL);
    unsigned char *stacks = (unsigned char *)at + plan_len;
    long got = sys(NR_mmap, stacks, stacks_len, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                   -1, 0);
    if (got != (long)stacks)
        rs_die("allocating thread stacks", got < 0 ? got : EEXIST);

    /* nothing of ours outside the area: the kernel's stack, vDSO and vvar go */
    rs_must(sys(NR_munmap, 0, P->area), "unmapping below the restart area");
    rs_must(sys(NR_munmap, P->area + P->area_len, TOP - P->area - P->area_len),
            "unmapping above the restart area");
    if (P->vdso_base)
        rs_must(sys(NR_arch_prctl, ARCH_MAP_VDSO_64, P->vdso_base),
                "mapping the vDSO at its address");

    rs_map_memory();
    struct cursor c = {(const u64 *)((const char *)P + P->runs), P->nruns, 0, 0};
    struct check k = {(const uint32_t *)((const char *)P + P->crcs), P->ncrcs, P->chunk, 0, 0};
    if (P->codec == 0) {
        rs_load_raw(&c, &k, stacks + P->nthreads * THREAD_STACK);
    } else {
        if (P->chunk != LZP_FRAME)
            rs_die("the restore plan is inconsistent", EINVAL);
        u64 len = (2 * LZP_FRAME + lzp_bound(LZP_FRAME) + PAGE - 1) & ~(PAGE - 1);
        unsigned char *buffers = stacks + stacks_len;
        got = sys(NR_mmap, buffers, len, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                  -1, 0);
        if (got != (long)buffers)
            rs_die("allocating buffers", got < 0 ? got : EEXIST);
        rs_load_compressed(&c, &k, buffers);
    }
    rs_protect_memory();
    /* the kernel's record: what the restored manager finishes for us */
    struct mtcp_resume *r = (struct mtcp_resume *)P->resume;
    if (!P->resume || r->magic != RESUME_MAGIC)
        rs_die("the image has no mtcp resume record where image.json says", EPROTO);
    rs_process_state(r);
    const i64 *cl = (const void *)((const char *)P + P->close);
    for (u64 i = 0; i < P->nclose; i++)
        sys(NR_close, cl[i]);
    const i64 *ce = (const void *)((const char *)P + P->cloexec);
    for (u64 i = 0; i < P->ncloexec; i++)
        rs_must(sys(NR_fcntl, ce[i], 2 /* F_SETFD */, 1 /* FD_CLOEXEC */), "setting close-on-exec");
    const struct plan_thread *t = (const void *)((const char *)P + P->threads);
    const struct plan_thread *me = 0;
    r->area = P->area;
    r->area_len = P->area_len;
    r->exe_fd = P->exe_fd;
    r->err_fd = P->err_fd;
    r->stop = (i64)P->stop;
    r->drop_caps = (int32_t)P->drop_caps;
    r->expect = (i64)P->nthreads - 1; /* every thread but the manager comes back to the handler */
    r->back = 0;
    for (u64 i = 0; i < P->nthreads; i++) {
        if (t[i].tid == P->pid) {
            me = &t[i];
            continue;
        }
        rs_start_thread(&t[i], stacks + i * THREAD_STACK);
    }
    rs_posix_timers(); /* now that their target threads exist; signals stay blocked everywhere */
    if (!me)
        rs_die("the image has no main thread", EPROTO);
    rs_become(me);
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
