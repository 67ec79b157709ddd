/* Character devices that a restart can reopen, at chosen descriptor numbers: /dev/null (fd 40,
 * write only), /dev/zero (fd 41), /dev/urandom (fd 42, O_CLOEXEC), /dev/full (fd 43). After the
 * restart each is the same device (st_rdev) with the same access mode and still behaves as that
 * device; fd 44 was never opened and must still be closed. */
#include "common.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

static const struct {
    const char *path;
    int flags, fd;
    unsigned minor;
} devs[] = {{"/dev/null", O_WRONLY, 40, 3},
            {"/dev/zero", O_RDONLY, 41, 5},
            {"/dev/urandom", O_RDONLY | O_CLOEXEC, 42, 9},
            {"/dev/full", O_RDWR, 43, 7}};
#define N (int)(sizeof devs / sizeof *devs)

int main(void)
{
    common_init();
    for (int i = 0; i < N; i++) {
        int f = open(devs[i].path, devs[i].flags);
        if (f < 0 || dup3(f, devs[i].fd, devs[i].flags & O_CLOEXEC) != devs[i].fd)
            DIE(devs[i].path);
        close(f);
    }
    if (sabotage())
        dup2(41, 40);
    ready();
    wait_term();

    for (int i = 0; i < N; i++) {
        struct stat st;
        int fd = devs[i].fd;
        CHECK(fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 &&
                  minor(st.st_rdev) == devs[i].minor,
              "fd %d is not %s", fd, devs[i].path);
        int fl = fcntl(fd, F_GETFL);
        CHECK(fl >= 0 && (fl & O_ACCMODE) == (devs[i].flags & O_ACCMODE),
              "fd %d (%s): access mode %#o", fd, devs[i].path, fl & O_ACCMODE);
        CHECK(fcntl(fd, F_GETFD) == ((devs[i].flags & O_CLOEXEC) ? FD_CLOEXEC : 0),
              "fd %d (%s): FD_CLOEXEC changed", fd, devs[i].path);
    }
    char buf[64];
    memset(buf, 1, sizeof buf);
    CHECK(write(40, buf, sizeof buf) == sizeof buf, "/dev/null refuses writes");
    CHECK(read(41, buf, sizeof buf) == sizeof buf && buf[0] == 0 && buf[63] == 0,
          "/dev/zero does not read zeros");
    CHECK(read(42, buf, sizeof buf) == sizeof buf, "/dev/urandom does not read");
    CHECK(write(43, buf, 1) == -1 && errno == ENOSPC, "/dev/full does not fail with ENOSPC");
    CHECK(fcntl(44, F_GETFD) == -1 && errno == EBADF, "fd 44 was never opened but is open now");
    return finish();
}
