/* File status flags (fcntl F_GETFL) and close-on-exec of every common descriptor kind, each
 * set differently from its neighbour so that a flag lost or added anywhere shows:
 *   30/31 pipe, read end O_NONBLOCK, write end blocking; 32 the same pipe's read end opened
 *   again (its own open file description), blocking, close-on-exec;
 *   33/34 pipe, read end blocking, write end O_NONBLOCK;
 *   35 a regular file O_WRONLY|O_APPEND; 36 the same file O_RDONLY|O_NOATIME, close-on-exec;
 *   37 the same file O_RDWR|O_NONBLOCK|O_DSYNC;
 *   40 a memfd as created; 41 the same memfd opened again O_RDONLY; 42 another memfd with
 *   O_APPEND|O_NONBLOCK; 47 eventfd with EFD_NONBLOCK, 48 without; 49 epoll with O_NONBLOCK
 *   set by fcntl;
 * and, unless argv[2] is "mtcp-kinds" (leaving out what mtcp refuses):
 *   43/44 a stream socketpair, 43 O_NONBLOCK; 45/46 a datagram socketpair, 46 O_NONBLOCK;
 *   50 timerfd without TFD_NONBLOCK.
 * After the restart every descriptor has exactly its F_GETFL flags and its FD_CLOEXEC. */
#include "common.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#define MAXFD 51
static int want_fl[MAXFD], want_fd[MAXFD], used[MAXFD];

static void at(int fd, int want)
{
    if (fd < 0 || dup2(fd, want) != want)
        DIE("descriptor");
    if (fd != want)
        close(fd);
    used[want] = 1;
}

static void add_fl(int fd, int flags)
{
    int cur = fcntl(fd, F_GETFL);
    if (cur < 0 || fcntl(fd, F_SETFL, cur | flags) != 0)
        DIE("F_SETFL");
}

static void cloexec(int fd)
{
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
        DIE("F_SETFD");
}

static void reopen(int fd, int flags, int want)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    at(open(path, flags), want);
}

int main(int argc, char **argv)
{
    char path[512];
    int p[2], sv[2];
    if (argc < 2)
        DIE("usage: fd_flags WORKDIR [mtcp-kinds]");
    int all = argc < 3 || strcmp(argv[2], "mtcp-kinds") != 0;
    common_init();

    if (pipe(p) != 0)
        DIE("pipe");
    at(p[0], 30);
    at(p[1], 31);
    add_fl(30, O_NONBLOCK);
    reopen(30, O_RDONLY, 32);
    cloexec(32);
    if (pipe(p) != 0)
        DIE("pipe");
    at(p[0], 33);
    at(p[1], 34);
    add_fl(34, O_NONBLOCK);
    snprintf(path, sizeof path, "%s/flags.txt", argv[1]);
    at(open(path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0644), 35);
    at(open(path, O_RDONLY | O_NOATIME), 36);
    cloexec(36);
    at(open(path, O_RDWR | O_NONBLOCK | O_DSYNC), 37);
    at(memfd_create("flags", 0), 40);
    reopen(40, O_RDONLY, 41);
    at(memfd_create("flags-append", MFD_CLOEXEC), 42);
    add_fl(42, O_APPEND | O_NONBLOCK);
    at(eventfd(1, EFD_NONBLOCK), 47);
    at(eventfd(2, 0), 48);
    at(epoll_create1(0), 49);
    add_fl(49, O_NONBLOCK);
    if (all) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
            DIE("socketpair");
        at(sv[0], 43);
        at(sv[1], 44);
        add_fl(43, O_NONBLOCK);
        if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0)
            DIE("socketpair");
        at(sv[0], 45);
        at(sv[1], 46);
        add_fl(46, O_NONBLOCK);
        at(timerfd_create(CLOCK_MONOTONIC, 0), 50);
    }
    for (int fd = 0; fd < MAXFD; fd++)
        if (used[fd]) {
            want_fl[fd] = fcntl(fd, F_GETFL);
            want_fd[fd] = fcntl(fd, F_GETFD);
        }

    if (sabotage())
        add_fl(31, O_NONBLOCK);
    ready();
    wait_term();

    for (int fd = 0; fd < MAXFD; fd++) {
        if (!used[fd])
            continue;
        int fl = fcntl(fd, F_GETFL), fdf = fcntl(fd, F_GETFD);
        CHECK(fl == want_fl[fd], "fd %d: F_GETFL %#o, expected %#o", fd, fl, want_fl[fd]);
        CHECK(fdf == want_fd[fd], "fd %d: F_GETFD %d, expected %d", fd, fdf, want_fd[fd]);
    }
    return finish();
}
