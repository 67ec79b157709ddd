/* Mode bits and owner of open deleted files (argv[1] is a work directory): a.bin, mode 0741
 * (and, as root, owned by 65534:65534), open O_RDWR at fd 21; b.bin, mode 0444, open O_RDONLY
 * at fd 22 and O_RDONLY again at 23 (one file, two open file descriptions); both unlinked.
 * After the restart both are still deleted files with their mode, owner, size and content, and
 * 22 and 23 are still one file. */
#include "common.h"

#include <sys/stat.h>

static int make(const char *dir, const char *name, mode_t mode, int fd, uint64_t seed)
{
    char path[512];
    static uint8_t buf[3000];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (f < 0 || dup2(f, fd) != fd)
        DIE(path);
    close(f);
    fill_pattern(buf, sizeof buf, seed);
    if (write(fd, buf, sizeof buf) != sizeof buf || fchmod(fd, mode) != 0)
        DIE("write, fchmod");
    if (geteuid() == 0 && fchown(fd, 65534, 65534) != 0)
        DIE("fchown");
    return unlink(path);
}

static void check(int fd, struct stat *want, uint64_t seed)
{
    struct stat st;
    static uint8_t buf[3000];
    CHECK(fstat(fd, &st) == 0 && st.st_nlink == 0, "fd %d is not a deleted file", fd);
    CHECK((st.st_mode & 07777) == (want->st_mode & 07777), "fd %d: mode %04o, expected %04o", fd,
          st.st_mode & 07777, want->st_mode & 07777);
    CHECK(st.st_uid == want->st_uid && st.st_gid == want->st_gid,
          "fd %d: owner %u:%u, expected %u:%u", fd, st.st_uid, st.st_gid, want->st_uid,
          want->st_gid);
    CHECK(pread(fd, buf, sizeof buf, 0) == sizeof buf && check_pattern(buf, sizeof buf, seed) < 0,
          "fd %d: content changed", fd);
}

int main(int argc, char **argv)
{
    struct stat a, b, b2;
    common_init();
    if (argc < 2)
        DIE("usage: fd_deleted_mode WORKDIR");
    if (make(argv[1], "a.bin", 0741, 21, 7) != 0 || make(argv[1], "b.bin", 0444, 22, 8) != 0)
        DIE("unlink");
    int f = open("/proc/self/fd/22", O_RDONLY);
    if (f < 0 || dup2(f, 23) != 23)
        DIE("reopen");
    close(f);
    if (fstat(21, &a) != 0 || fstat(22, &b) != 0)
        DIE("fstat");

    if (sabotage() && fchmod(21, 0600) != 0)
        DIE("fchmod");
    ready();
    wait_term();

    check(21, &a, 7);
    check(22, &b, 8);
    check(23, &b, 8);
    CHECK(fstat(22, &b) == 0 && fstat(23, &b2) == 0 && b.st_ino == b2.st_ino &&
              b.st_dev == b2.st_dev, "fds 22 and 23 are no longer one file");
    CHECK((fcntl(23, F_GETFL) & O_ACCMODE) == O_RDONLY, "fd 23 is not read-only");
    return finish();
}
