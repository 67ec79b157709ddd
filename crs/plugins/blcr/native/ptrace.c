/* blcr module: ptrace control of another process's threads. A thread is seized and brought to a
 * stop (a signal on its way in is delivered first, as it would have been); a system call is run
 * in a stopped thread by pointing it at a syscall instruction and letting it through the entry
 * and exit stops; a thread that an injected clone made is waited for. */
#include "blcr.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#define SYSCALL_STOP (SIGTRAP | 0x80)

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

