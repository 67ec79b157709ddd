/* blcr module: descriptors. Another process's descriptor is taken with pidfd_getfd and compared
 * with kcmp; the unread content of a pipe is copied with tee, without consuming it; timerfds
 * (with their expirations) and signalfds are made again with the raw system calls. */
#include "blcr.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int blcr_pidfd_getfd(int pidfd, int fd)
{
    long r = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    return r < 0 ? -errno : (int)r;
}

/* 0 when both descriptors of `pid` refer to one open file description. */
int blcr_kcmp_file(int pid, int fd1, int fd2)
{
    long r = syscall(SYS_kcmp, pid, pid, 0 /* KCMP_FILE */, fd1, fd2);
    return r < 0 ? -errno : (int)r;
}

/* 0 when descriptor `fd` of `pid` is the file its epoll set `epfd` watches as the `toff`-th
 * registration under number `tfd` (a number can be registered again for another file). */
int blcr_kcmp_epoll_target(int pid, int fd, int epfd, int tfd, int toff)
{
    struct { uint32_t efd, tfd, toff; } slot = {(uint32_t)epfd, (uint32_t)tfd, (uint32_t)toff};
    long r = syscall(SYS_kcmp, pid, pid, 7 /* KCMP_EPOLL_TFD */, fd, &slot);
    return r < 0 ? -errno : (int)r;
}

/* Duplicate the unread content of a pipe, without consuming it, into a new pipe of ours; returns
 * the read end of the copy (or -errno) and the number of bytes in *n. */
int blcr_pipe_peek(int read_end, size_t cap, long *n)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    if (cap && fcntl(p[1], F_SETPIPE_SZ, (int)cap) < 0) {
        int e = -errno;
        close(p[0]);
        close(p[1]);
        return e;
    }
    ssize_t t = tee(read_end, p[1], cap ? cap : 1 << 20, SPLICE_F_NONBLOCK);
    close(p[1]);
    if (t < 0 && errno != EAGAIN) {
        int e = -errno;
        close(p[0]);
        return e;
    }
    *n = t < 0 ? 0 : t;
    return p[0];
}

int blcr_timerfd_create(int clockid, int flags)
{
    long r = syscall(SYS_timerfd_create, clockid, flags);
    return r < 0 ? -errno : (int)r;
}

int blcr_timerfd_settime(int fd, int flags, int64_t vs, int64_t vns, int64_t is, int64_t ins,
                         uint64_t ticks)
{
    struct { int64_t is, ins, vs, vns; } t = {is, ins, vs, vns};
    if (syscall(SYS_timerfd_settime, fd, flags, &t, NULL) < 0)
        return -errno;
    if (ticks && ioctl(fd, _IOW('T', 0, uint64_t), &ticks) < 0)
        return -errno;
    return 0;
}

int blcr_signalfd(uint64_t mask, int flags)
{
    long r = syscall(SYS_signalfd4, -1, &mask, 8, flags);
    return r < 0 ? -errno : (int)r;
}
