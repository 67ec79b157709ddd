/* Four computing threads. Each records its TID (gettid), pthread_self and the address of its
 * __thread counter, blocks its own set of signals, and counts in its __thread counter
 * (publishing the count in a shared array) until told to stop. After the restart: the threads
 * are still counting (their counts grow within 0.3 s), each thread finds its own TID, pthread_t,
 * __thread address and signal mask, its private counter equals what it published, the process
 * has exactly the same TIDs in /proc/self/task, and pthread_join collects every thread's result. */
#include "common.h"

#include <dirent.h>
#include <pthread.h>

#define N 4

static __thread volatile uint64_t counter;
static __thread uint64_t lcg;
static volatile uint64_t published[N];
static volatile int stop, started;
static pid_t tids[N];
static pthread_t selfs[N];
static const void *tls_addr[N];
static pid_t main_tid;

static void thread_mask(int i, sigset_t *s)
{
    sigemptyset(s);
    sigaddset(s, SIGTERM); /* SIGTERM is for main */
    sigaddset(s, SIGUSR1 + (i % 2) * (SIGUSR2 - SIGUSR1));
    if (i == 3)
        sigaddset(s, SIGRTMIN + 5);
}

static void *work(void *arg)
{
    int i = (int)(intptr_t)arg;
    sigset_t mine, now;
    thread_mask(i, &mine);
    pthread_sigmask(SIG_SETMASK, &mine, NULL);
    tids[i] = gettid();
    selfs[i] = pthread_self();
    tls_addr[i] = (const void *)&counter;
    lcg = i + 1;
    __sync_fetch_and_add(&started, 1);
    while (!stop) {
        for (int k = 0; k < 1000; k++)
            lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        counter++;
        published[i] = counter;
    }
    char *err = malloc(256);
    err[0] = 0;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    if (gettid() != tids[i])
        snprintf(err, 256, "thread %d: TID %d, expected %d", i, gettid(), tids[i]);
    else if (!pthread_equal(pthread_self(), selfs[i]))
        snprintf(err, 256, "thread %d: pthread_self changed", i);
    else if ((const void *)&counter != tls_addr[i])
        snprintf(err, 256, "thread %d: __thread counter moved", i);
    else if (counter != published[i])
        snprintf(err, 256, "thread %d: __thread counter %lu, published %lu", i,
                 (unsigned long)counter, (unsigned long)published[i]);
    else
        for (int s = 1; s < 65 && !err[0]; s++)
            if (sigismember(&now, s) != sigismember(&mine, s))
                snprintf(err, 256, "thread %d: signal %d %s blocked", i, s,
                         sigismember(&now, s) ? "became" : "is no longer");
    return err;
}

static int task_tids(pid_t *out, int max)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && n < max)
            out[n++] = atoi(e->d_name);
    if (d)
        closedir(d);
    return n;
}

int main(void)
{
    pthread_t th[N];
    common_init();
    main_tid = gettid();
    for (int i = 0; i < N; i++)
        if (pthread_create(&th[i], NULL, work, (void *)(intptr_t)i) != 0)
            DIE("pthread_create");
    while (started < N)
        sleep_through(0.001);

    if (sabotage())
        tids[2] += 1;
    ready();
    wait_term();

    uint64_t before[N];
    for (int i = 0; i < N; i++)
        before[i] = published[i];
    sleep_through(0.3);
    for (int i = 0; i < N; i++)
        CHECK(published[i] > before[i], "thread %d (TID %d) stopped counting", i, tids[i]);
    CHECK(gettid() == main_tid && getpid() == main_tid, "main thread TID %d, expected %d",
          gettid(), main_tid);
    pid_t seen[16];
    int n = task_tids(seen, 16), matched = 0;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < N; i++)
            matched += seen[k] == tids[i];
    CHECK(n == N + 1 && matched == N, "/proc/self/task has %d threads, %d of the recorded TIDs", n,
          matched);

    stop = 1;
    for (int i = 0; i < N; i++) {
        struct timespec dl;
        void *res = NULL;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 5;
        int r = pthread_timedjoin_np(th[i], &res, &dl);
        CHECK(r == 0, "pthread_join of thread %d: %s", i, strerror(r));
        if (r == 0 && res && ((char *)res)[0])
            FAIL("%s", (char *)res);
    }
    return finish();
}
