/* Timers:
 *   ITIMER_REAL, 50 ms period, with a counting SIGALRM handler (SA_RESTART);
 *   a POSIX timer on CLOCK_MONOTONIC, 70 ms period, delivering SIGRTMIN+2 with value 4242 to a
 *   counting SA_SIGINFO handler;
 *   a POSIX timer on CLOCK_REALTIME, one-shot in 1 hour, delivering SIGRTMIN+4 (never fires).
 * After the restart getitimer and timer_gettime give the same periods and a remaining time
 * within the period (the hour for the one-shot), the timer ids are still valid, and the two
 * periodic timers keep firing (with the POSIX timer's value and SI_TIMER). */
#include "common.h"

#include <sys/time.h>

static volatile long alarms, ticks, bad_ticks;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void on_tick(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    if (si->si_code != SI_TIMER || si->si_value.sival_int != 4242)
        bad_ticks++;
    ticks++;
}

static double tv(struct timeval t)
{
    return t.tv_sec + t.tv_usec / 1e6;
}

static double ts(struct timespec t)
{
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void)
{
    struct sigaction sa = {0};
    struct itimerval itv = {{0, 50000}, {0, 50000}}, iv;
    struct itimerspec period = {{0, 70000000}, {0, 70000000}}, hour = {{0, 0}, {3600, 0}}, cur;
    struct sigevent ev = {0};
    timer_t periodic, oneshot;

    common_init();
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_sigaction = on_tick;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN + 2, &sa, NULL);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN + 2;
    ev.sigev_value.sival_int = 4242;
    if (timer_create(CLOCK_MONOTONIC, &ev, &periodic) != 0)
        DIE("timer_create");
    ev.sigev_signo = SIGRTMIN + 4;
    if (timer_create(CLOCK_REALTIME, &ev, &oneshot) != 0)
        DIE("timer_create");
    if (setitimer(ITIMER_REAL, &itv, NULL) || timer_settime(periodic, 0, &period, NULL) ||
        timer_settime(oneshot, 0, &hour, NULL))
        DIE("arm timers");

    if (sabotage())
        timer_settime(periodic, 0, &(struct itimerspec){{0, 80000000}, {0, 80000000}}, NULL);
    ready();
    wait_term();

    CHECK(getitimer(ITIMER_REAL, &iv) == 0 && iv.it_interval.tv_sec == 0 &&
              iv.it_interval.tv_usec == 50000 && tv(iv.it_value) > 0 && tv(iv.it_value) <= 0.05,
          "ITIMER_REAL interval %.6f value %.6f, expected 0.05 and at most 0.05",
          tv(iv.it_interval), tv(iv.it_value));
    CHECK(timer_gettime(periodic, &cur) == 0 && cur.it_interval.tv_sec == 0 &&
              cur.it_interval.tv_nsec == 70000000 && ts(cur.it_value) > 0 &&
              ts(cur.it_value) <= 0.07,
          "periodic POSIX timer interval %.6f value %.6f, expected 0.07 and at most 0.07",
          ts(cur.it_interval), ts(cur.it_value));
    CHECK(timer_getoverrun(periodic) >= 0, "the periodic timer id is not valid any more");
    CHECK(timer_gettime(oneshot, &cur) == 0 && cur.it_interval.tv_sec == 0 &&
              cur.it_interval.tv_nsec == 0 && ts(cur.it_value) > 3000 && ts(cur.it_value) <= 3600,
          "one-shot POSIX timer interval %.3f value %.3f, expected 0 and at most 3600",
          ts(cur.it_interval), ts(cur.it_value));

    long a0 = alarms, t0 = ticks;
    sleep_through(0.6);
    CHECK(alarms - a0 >= 5, "ITIMER_REAL fired %ld times in 0.6 s (50 ms period)", alarms - a0);
    CHECK(ticks - t0 >= 4, "the POSIX timer fired %ld times in 0.6 s (70 ms period)", ticks - t0);
    CHECK(bad_ticks == 0, "%ld POSIX timer signals without SI_TIMER and value 4242", bad_ticks);
    return finish();
}
