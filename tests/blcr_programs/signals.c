/* Signal state:
 *   SIGUSR1 - SA_SIGINFO|SA_RESTART handler, sa_mask {SIGUSR2, SIGHUP};
 *   SIGUSR2 - SA_ONSTACK handler, with a 64 KiB sigaltstack;
 *   SIGINT  - SA_RESETHAND|SA_NODEFER handler;   SIGPIPE - ignored;
 *   blocked - SIGHUP, SIGWINCH and SIGRTMIN+3;
 *   pending - SIGHUP (sent to the thread with raise) and SIGRTMIN+3 queued twice to the process
 *             with sigqueue, values 111 and 222.
 * After the restart sigaction returns the same handlers, flags and masks, sigprocmask the same
 * blocked set, sigpending the pending ones, sigaltstack the same stack; the queued signals come
 * out in order with their values; SIGUSR1 runs its handler with SIGUSR2 blocked and SIGUSR2 runs
 * its handler on the alternate stack. */
#include "common.h"

#include <sys/mman.h>

#define ALTSZ (64 * 1024)
static volatile int usr1_seen, usr1_had_usr2_blocked, usr1_code, usr2_seen;
static volatile uintptr_t usr2_local;
static uint8_t *alt;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    sigset_t cur;
    (void)uc;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    usr1_had_usr2_blocked = sigismember(&cur, SIGUSR2) && sigismember(&cur, SIGHUP);
    usr1_code = si->si_signo == sig;
    usr1_seen++;
}

static void on_usr2(int sig)
{
    volatile int local = sig;
    usr2_local = (uintptr_t)&local;
    usr2_seen++;
}

static void on_int(int sig)
{
    (void)sig;
}

static void set(int sig, void (*h)(int), void (*a)(int, siginfo_t *, void *), int flags,
                int masked1, int masked2)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (a)
        sa.sa_sigaction = a;
    else
        sa.sa_handler = h;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (masked1)
        sigaddset(&sa.sa_mask, masked1);
    if (masked2)
        sigaddset(&sa.sa_mask, masked2);
    if (sigaction(sig, &sa, NULL) != 0)
        DIE("sigaction");
}

static int same_set(const sigset_t *a, const sigset_t *b)
{
    for (int s = 1; s < 65; s++)
        if (sigismember(a, s) != sigismember(b, s))
            return 0;
    return 1;
}

static const int sigs[] = {SIGUSR1, SIGUSR2, SIGINT, SIGPIPE, SIGTERM, SIGHUP, SIGALRM};
#define NSIGS (int)(sizeof sigs / sizeof *sigs)

int main(void)
{
    struct sigaction before[NSIGS], now;
    sigset_t blocked, blocked0, pend;
    stack_t ss = {0}, ss0, ss1;
    int rt = SIGRTMIN + 3;

    common_init();
    set(SIGUSR1, NULL, on_usr1, SA_SIGINFO | SA_RESTART, SIGUSR2, SIGHUP);
    set(SIGUSR2, on_usr2, NULL, SA_ONSTACK, 0, 0);
    set(SIGINT, on_int, NULL, SA_RESETHAND | SA_NODEFER, 0, 0);
    set(SIGPIPE, SIG_IGN, NULL, 0, 0, 0);
    alt = mmap(NULL, ALTSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ss.ss_sp = alt;
    ss.ss_size = ALTSZ;
    if (alt == MAP_FAILED || sigaltstack(&ss, NULL) != 0)
        DIE("sigaltstack");
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGHUP);
    sigaddset(&blocked, SIGWINCH);
    sigaddset(&blocked, rt);
    sigprocmask(SIG_BLOCK, &blocked, NULL);
    raise(SIGHUP);
    if (sigqueue(getpid(), rt, (union sigval){.sival_int = 111}) ||
        sigqueue(getpid(), rt, (union sigval){.sival_int = 222}))
        DIE("sigqueue");
    for (int i = 0; i < NSIGS; i++)
        sigaction(sigs[i], NULL, &before[i]);
    sigprocmask(SIG_BLOCK, NULL, &blocked0);
    sigaltstack(NULL, &ss0);

    if (sabotage())
        set(SIGUSR1, NULL, on_usr1, SA_SIGINFO, SIGUSR2, SIGHUP);
    ready();
    wait_term();

    for (int i = 0; i < NSIGS; i++) {
        sigaction(sigs[i], NULL, &now);
        CHECK(now.sa_handler == before[i].sa_handler, "signal %d: handler %p, expected %p",
              sigs[i], (void *)now.sa_handler, (void *)before[i].sa_handler);
        CHECK(now.sa_flags == before[i].sa_flags, "signal %d: flags %#x, expected %#x", sigs[i],
              now.sa_flags, before[i].sa_flags);
        CHECK(same_set(&now.sa_mask, &before[i].sa_mask), "signal %d: sa_mask changed", sigs[i]);
    }
    sigset_t b;
    sigprocmask(SIG_BLOCK, NULL, &b);
    CHECK(same_set(&b, &blocked0), "the blocked signal mask changed");
    sigpending(&pend);
    CHECK(sigismember(&pend, SIGHUP), "SIGHUP is no longer pending");
    CHECK(sigismember(&pend, rt), "SIGRTMIN+3 is no longer pending");
    CHECK(!sigismember(&pend, SIGWINCH), "SIGWINCH is pending but was never sent");
    sigaltstack(NULL, &ss1);
    CHECK(ss1.ss_sp == ss0.ss_sp && ss1.ss_size == ss0.ss_size && ss1.ss_flags == ss0.ss_flags,
          "sigaltstack %p+%zu flags %d, expected %p+%zu flags %d", ss1.ss_sp, ss1.ss_size,
          ss1.ss_flags, ss0.ss_sp, ss0.ss_size, ss0.ss_flags);

    sigset_t one;
    siginfo_t si;
    struct timespec zero = {0, 0};
    sigemptyset(&one);
    sigaddset(&one, rt);
    for (int want = 111; want <= 222; want += 111) {
        int s = sigtimedwait(&one, &si, &zero);
        CHECK(s == rt && si.si_code == SI_QUEUE && si.si_value.sival_int == want,
              "queued SIGRTMIN+3 #%d: signal %d code %d value %d, expected value %d", want / 111,
              s, si.si_code, si.si_value.sival_int, want);
    }
    CHECK(sigtimedwait(&one, &si, &zero) == -1 && errno == EAGAIN,
          "more SIGRTMIN+3 pending than were queued");
    sigemptyset(&one);
    sigaddset(&one, SIGHUP);
    CHECK(sigtimedwait(&one, &si, &zero) == SIGHUP, "the pending SIGHUP cannot be taken");

    raise(SIGUSR1);
    CHECK(usr1_seen == 1 && usr1_code, "the SIGUSR1 handler did not run with its siginfo");
    CHECK(usr1_had_usr2_blocked, "SIGUSR2 and SIGHUP were not blocked in the SIGUSR1 handler");
    raise(SIGUSR2);
    CHECK(usr2_seen == 1, "the SIGUSR2 handler did not run");
    CHECK(usr2_local >= (uintptr_t)alt && usr2_local < (uintptr_t)alt + ALTSZ,
          "the SIGUSR2 handler did not run on the alternate stack");
    return finish();
}
