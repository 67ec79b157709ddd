/* Threads blocked in system calls when the checkpoint comes, which must resume as if nothing
 * happened (every signal is blocked in them, so no call may ever fail with EINTR):
 *   reader   - read() on an empty pipe: returns exactly the bytes main writes after SIGTERM;
 *   sleeper  - relative nanosleep(0.7 s) in a loop: each returns 0 after at least 0.7 s, and it
 *              keeps sleeping and waking after the restart;
 *   absleep  - clock_nanosleep(TIMER_ABSTIME, now + 1 h): never returns; pthread_cancel ends it;
 *   poller   - poll(timeout 0.4 s) on an empty pipe in a loop: returns 0 after at least the
 *              timeout, until main writes to the pipe (returns 1 then);
 *   waiter   - pthread_cond_wait: wakes up when main signals the condition.
 * The main thread is blocked in read() on the SIGTERM self-pipe. */
#include "common.h"

#include <poll.h>
#include <pthread.h>

static int reader_pipe[2], poller_pipe[2];
static volatile int reader_done, waiter_done, absleep_returned, stop_sleeper;
static volatile long sleeper_count, poller_count;
static char reader_buf[64];
static ssize_t reader_n;
static char sleeper_err[128], poller_err[128];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;
static volatile int started;

static void *reader(void *arg)
{
    (void)arg;
    __sync_fetch_and_add(&started, 1);
    reader_n = read(reader_pipe[0], reader_buf, sizeof reader_buf);
    reader_done = 1;
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    __sync_fetch_and_add(&started, 1);
    while (!stop_sleeper) {
        struct timespec req = {0, 700000000}, rem;
        double t0 = now_mono();
        int r = nanosleep(&req, &rem);
        double dt = now_mono() - t0;
        if (r != 0 && !sleeper_err[0])
            snprintf(sleeper_err, sizeof sleeper_err, "nanosleep failed: %s", strerror(errno));
        else if (dt < 0.7 && !sleeper_err[0])
            snprintf(sleeper_err, sizeof sleeper_err, "nanosleep(0.7) returned after %.3f s", dt);
        sleeper_count++;
    }
    return NULL;
}

static void *absleep(void *arg)
{
    struct timespec t;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += 3600;
    __sync_fetch_and_add(&started, 1);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) != 0)
        ; /* only cancellation may end it */
    absleep_returned = 1;
    return NULL;
}

static void *poller(void *arg)
{
    (void)arg;
    __sync_fetch_and_add(&started, 1);
    for (;;) {
        struct pollfd p = {poller_pipe[0], POLLIN, 0};
        double t0 = now_mono();
        int r = poll(&p, 1, 400);
        double dt = now_mono() - t0;
        if (r == 1)
            return NULL;
        if (r < 0 && !poller_err[0])
            snprintf(poller_err, sizeof poller_err, "poll failed: %s", strerror(errno));
        else if (r == 0 && dt < 0.399 && !poller_err[0])
            snprintf(poller_err, sizeof poller_err, "poll(0.4) timed out after %.3f s", dt);
        if (r < 0)
            return NULL;
        poller_count++;
    }
}

static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    __sync_fetch_and_add(&started, 1);
    while (!go)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    waiter_done = 1;
    return NULL;
}

static int join(pthread_t t, const char *name)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    int r = pthread_timedjoin_np(t, NULL, &dl);
    CHECK(r == 0, "%s thread did not end: %s", name, strerror(r));
    return r == 0;
}

int main(void)
{
    pthread_t tr, ts, ta, tp, tw;
    sigset_t all, old;

    common_init();
    if (pipe(reader_pipe) || pipe(poller_pipe))
        DIE("pipe");
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* threads inherit: no signal reaches them */
    if (pthread_create(&tr, NULL, reader, NULL) || pthread_create(&ts, NULL, sleeper, NULL) ||
        pthread_create(&ta, NULL, absleep, NULL) || pthread_create(&tp, NULL, poller, NULL) ||
        pthread_create(&tw, NULL, waiter, NULL))
        DIE("pthread_create");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    while (started < 5)
        sleep_through(0.01);
    sleep_through(0.1); /* let every thread enter its system call */

    if (sabotage() && write(reader_pipe[1], "early", 5) != 5)
        DIE("write");
    ready();
    wait_term();

    CHECK(!reader_done, "read() on the empty pipe returned before data came (%zd)", reader_n);
    CHECK(!absleep_returned, "the absolute clock_nanosleep returned");
    CHECK(!waiter_done, "pthread_cond_wait returned before the condition was signalled");
    long s1 = sleeper_count;

    if (write(reader_pipe[1], "wake!", 5) != 5 || write(poller_pipe[1], "p", 1) != 1)
        DIE("write");
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    sleep_through(1.6); /* the sleeper completes at least one more sleep */
    stop_sleeper = 1;
    pthread_cancel(ta);

    if (join(tr, "reader"))
        CHECK(reader_n == 5 && memcmp(reader_buf, "wake!", 5) == 0,
              "read() returned %zd bytes \"%.*s\", expected \"wake!\"", reader_n,
              reader_n > 0 ? (int)reader_n : 0, reader_buf);
    join(tw, "cond waiter");
    join(tp, "poller");
    join(ts, "sleeper");
    join(ta, "absolute sleeper (cancelled)");
    CHECK(!absleep_returned, "the absolute clock_nanosleep returned instead of being cancelled");
    CHECK(!sleeper_err[0], "%s", sleeper_err);
    CHECK(!poller_err[0], "%s", poller_err);
    CHECK(sleeper_count > s1, "the sleeper did not wake up after SIGTERM (%ld sleeps)",
          sleeper_count);
    return finish();
}
