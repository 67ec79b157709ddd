/* Event descriptors, at chosen numbers:
 *   60 eventfd with count 42;  61 semaphore eventfd with count 3;
 *   62 timerfd, 100 ms period, armed (expirations left unread);  63 timerfd one-shot in 1 hour;
 *   64 signalfd for SIGUSR1 and SIGUSR2 (both blocked), SIGUSR1 pending;
 *   65 epoll watching 60, 62, 64 and the empty pipe 66 (write end 67), each with its own data;
 *   68 epoll watching the SIGTERM self-pipe, the one main blocks in (epoll_wait, no timeout).
 * After the restart: epoll 65 reports exactly the ready descriptors with their data (not the
 * empty pipe until something is written to it) and still watches all four; the eventfds hold
 * their counts; the timerfds are armed with the same period / the remaining time; the signalfd
 * has its mask and delivers the pending SIGUSR1, then a new SIGUSR2. */
#include "common.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

static void at(int fd, int want)
{
    if (fd < 0 || dup2(fd, want) != want)
        DIE("descriptor");
    close(fd);
}

static void watch(int ep, int fd, uint64_t data)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = data};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        DIE("epoll_ctl");
}

/* Bit i of the result: data value 0x1111 * (i + 1) was reported ready. */
static unsigned ready_set(int ep)
{
    struct epoll_event evs[8];
    unsigned set = 0;
    int n = epoll_wait(ep, evs, 8, 0);
    for (int i = 0; i < n; i++) {
        uint64_t d = evs[i].data.u64;
        if (d % 0x1111 == 0 && d >= 0x1111 && d <= 0x4444)
            set |= 1u << (d / 0x1111 - 1);
        else
            FAIL("epoll reported unknown data %#lx", (unsigned long)d);
    }
    return set;
}

/* The "sigmask:" line of /proc/self/fdinfo/FD, or the count of "tfd:" lines if tfd is set. */
static int fdinfo(int fd, char *sigmask, size_t n)
{
    char path[64], line[256];
    int tfds = 0;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (sigmask && strncmp(line, "sigmask:", 8) == 0)
            snprintf(sigmask, n, "%s", line);
        tfds += strncmp(line, "tfd:", 4) == 0;
    }
    fclose(f);
    return tfds;
}

static double ts(struct timespec t)
{
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void)
{
    int p[2];
    sigset_t usr;
    struct itimerspec period = {{0, 100000000}, {0, 100000000}}, hour = {{0, 0}, {3600, 0}};
    char mask0[128] = "", mask1[128] = "";
    uint64_t v;

    common_init();
    at(eventfd(0, EFD_NONBLOCK), 60);
    if (write(60, &(uint64_t){42}, 8) != 8)
        DIE("eventfd write");
    at(eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK), 61);
    at(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), 62);
    at(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), 63);
    if (timerfd_settime(62, 0, &period, NULL) || timerfd_settime(63, 0, &hour, NULL))
        DIE("timerfd_settime");
    sigemptyset(&usr);
    sigaddset(&usr, SIGUSR1);
    sigaddset(&usr, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr, NULL);
    at(signalfd(-1, &usr, SFD_NONBLOCK), 64);
    raise(SIGUSR1);
    if (pipe(p))
        DIE("pipe");
    at(p[0], 66);
    at(p[1], 67);
    at(epoll_create1(0), 65);
    watch(65, 60, 0x1111);
    watch(65, 66, 0x2222);
    watch(65, 62, 0x3333);
    watch(65, 64, 0x4444);
    at(epoll_create1(EPOLL_CLOEXEC), 68);
    watch(68, term_pipe[0], 1);
    fdinfo(64, mask0, sizeof mask0);

    if (sabotage() && read(60, &v, 8) != 8)
        DIE("read");
    ready();
    while (!term_flag) {
        struct epoll_event ev;
        int n = epoll_wait(68, &ev, 1, -1);
        if (n < 0 && errno != EINTR)
            DIE("epoll_wait");
    }

    sleep_through(0.15); /* the periodic timer has expired at least once since the restart */
    unsigned set = ready_set(65);
    CHECK(set & 1, "epoll does not report the eventfd ready");
    CHECK(!(set & 2), "epoll reports the empty pipe ready");
    CHECK(set & 4, "epoll does not report the periodic timerfd ready");
    CHECK(set & 8, "epoll does not report the signalfd (SIGUSR1 pending) ready");
    CHECK(write(67, "x", 1) == 1 && (ready_set(65) & 2), "epoll does not see data in the pipe");
    CHECK(fdinfo(65, NULL, 0) == 4, "epoll watches %d descriptors, expected 4",
          fdinfo(65, NULL, 0));

    v = 0;
    CHECK(read(60, &v, 8) == 8 && v == 42, "eventfd count %lu, expected 42", (unsigned long)v);
    CHECK(read(60, &v, 8) == -1 && errno == EAGAIN, "eventfd not empty after reading it");
    int sem = 0;
    while (read(61, &v, 8) == 8 && v == 1)
        sem++;
    CHECK(sem == 3, "semaphore eventfd gave %d, expected 3", sem);

    struct itimerspec cur;
    CHECK(timerfd_gettime(62, &cur) == 0 && cur.it_interval.tv_sec == 0 &&
              cur.it_interval.tv_nsec == 100000000 && ts(cur.it_value) > 0 &&
              ts(cur.it_value) <= 0.1,
          "periodic timerfd: interval %.6f value %.6f", ts(cur.it_interval), ts(cur.it_value));
    CHECK(read(62, &v, 8) == 8 && v >= 1, "periodic timerfd has no expirations");
    sleep_through(0.25);
    CHECK(read(62, &v, 8) == 8 && v >= 1, "periodic timerfd stopped expiring");
    CHECK(timerfd_gettime(63, &cur) == 0 && cur.it_interval.tv_sec == 0 &&
              cur.it_interval.tv_nsec == 0 &&
              ts(cur.it_value) > 3000 && ts(cur.it_value) <= 3600,
          "one-shot timerfd: interval %.3f value %.3f, expected 0 and at most 3600",
          ts(cur.it_interval), ts(cur.it_value));
    CHECK(read(63, &v, 8) == -1 && errno == EAGAIN, "the one-hour timerfd already expired");

    fdinfo(64, mask1, sizeof mask1);
    CHECK(mask0[0] && strcmp(mask0, mask1) == 0, "signalfd mask %s, expected %s", mask1, mask0);
    struct signalfd_siginfo si;
    CHECK(read(64, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1,
          "the signalfd does not deliver the pending SIGUSR1");
    CHECK(read(64, &si, sizeof si) == -1 && errno == EAGAIN, "the signalfd has more than SIGUSR1");
    raise(SIGUSR2);
    CHECK(read(64, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR2,
          "the signalfd does not deliver a new SIGUSR2");
    return finish();
}
