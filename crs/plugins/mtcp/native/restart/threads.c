/* pycrs-mtcp-restart: the threads. Each is made with clone3 and its TID (set_tid), takes back
 * what the kernel keeps per thread (fs/gs bases, tid address, robust list, alternate stack,
 * rseq, name, affinity, nice, XSAVE state) and jumps to the capture point the mtcp kernel
 * recorded for it, with 1 as the capture's result. */
#include "restart.h"

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
        ".globl rs_clone3_thread\n"
        ".hidden rs_clone3_thread\n"
        ".type rs_clone3_thread,@function\n"
        "rs_clone3_thread:\n"
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
        ".size rs_clone3_thread, .-rs_clone3_thread\n");

/* Per-thread kernel state, then the jump. Runs in the thread itself. */
void __attribute__((noreturn)) rs_become(const struct plan_thread *t)
{
    const struct plan *P = rs_plan;
    rs_must(sys(NR_arch_prctl, ARCH_SET_FS, t->fs_base), "setting a thread's fs base");
    if (t->gs_base)
        rs_must(sys(NR_arch_prctl, ARCH_SET_GS, t->gs_base), "setting a thread's gs base");
    sys(NR_set_tid_address, t->tid_address);
    if (t->robust_head)
        rs_must(sys(NR_set_robust_list, t->robust_head, t->robust_len), "set_robust_list");
    if (!(t->alt_flags & SS_DISABLE)) {
        u64 ss[3] = {t->alt_sp, t->alt_flags, t->alt_size}; /* stack_t: sp, int flags, size */
        rs_must(sys(NR_sigaltstack, ss, 0), "sigaltstack");
    }
    if (t->rseq_ptr)
        rs_must(sys(NR_rseq, t->rseq_ptr, t->rseq_size, 0, t->rseq_sig), "rseq registration");
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

static void thread_main(const void *t) { rs_become(t); }

void rs_start_thread(const struct plan_thread *t, unsigned char *stack)
{
    i64 tid = t->tid;
    u64 args[11] = {0};
    args[0] = THREAD_FLAGS;
    args[5] = (u64)stack;   /* stack */
    args[6] = THREAD_STACK; /* stack_size */
    args[8] = (u64)&tid;    /* set_tid */
    args[9] = 1;            /* set_tid_size */
    long got = rs_clone3_thread(args, sizeof args, thread_main, t);
    /* the ID may still be the CRC checker's for a moment after it ended */
    for (int tries = 0; got == -EEXIST && tries < 1000; tries++) {
        u64 ts[2] = {0, 1000000};
        sys(NR_nanosleep, ts, 0);
        got = rs_clone3_thread(args, sizeof args, thread_main, t);
    }
    if (got != tid)
        rs_die("creating a thread with its thread ID (clone3)", got < 0 ? got : EEXIST);
}
