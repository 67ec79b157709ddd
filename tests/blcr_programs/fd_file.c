/* Regular files (argv[1] is a work directory), each at a chosen descriptor number:
 *   fd 10  out.txt     O_RDWR, 10000 bytes written, offset moved back to 1234;
 *   fd 11  append.log  O_WRONLY|O_APPEND, one line written;
 *   fd 12  input.txt   O_RDONLY|O_CLOEXEC|O_NONBLOCK, 5 bytes read (offset 5);
 *   fd 14  a dup of fd 10: one open file, so moving the offset of one moves the other's.
 * After the restart each has its offset, access mode and flags, is the same file (inode), and
 * goes on working from there: a write at 1234, an append at the end, the next bytes read.
 * Descriptor 13 was never opened and must still be closed. */
#include "common.h"

#include <sys/stat.h>

static int open_at(const char *dir, const char *name, int flags, int fd)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int f = open(path, flags, 0640);
    if (f < 0 || dup3(f, fd, flags & O_CLOEXEC) != fd)
        DIE(path);
    close(f);
    return fd;
}

static ino_t inode(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

int main(int argc, char **argv)
{
    uint8_t buf[10000], got[10000];
    common_init();
    if (argc < 2)
        DIE("usage: fd_file WORKDIR");
    const char *d = argv[1];
    char path[512];
    snprintf(path, sizeof path, "%s/input.txt", d);
    FILE *in = fopen(path, "w");
    if (!in || fputs("HelloWorld-and-more", in) < 0 || fclose(in) != 0)
        DIE("input.txt");

    int out = open_at(d, "out.txt", O_RDWR | O_CREAT | O_TRUNC, 10);
    int app = open_at(d, "append.log", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 11);
    int ro = open_at(d, "input.txt", O_RDONLY | O_CLOEXEC | O_NONBLOCK, 12);
    fill_pattern(buf, sizeof buf, 3);
    if (write(out, buf, sizeof buf) != sizeof buf || lseek(out, 1234, SEEK_SET) != 1234)
        DIE("out.txt");
    if (write(app, "line1\n", 6) != 6)
        DIE("append.log");
    if (read(ro, got, 5) != 5)
        DIE("input.txt");
    if (dup2(out, 14) != 14)
        DIE("dup2");
    ino_t ino[3] = {inode(out), inode(app), inode(ro)};

    if (sabotage())
        lseek(out, 1, SEEK_CUR);
    ready();
    wait_term();

    CHECK(inode(out) == ino[0], "fd 10 is not out.txt any more");
    CHECK(inode(app) == ino[1], "fd 11 is not append.log any more");
    CHECK(inode(ro) == ino[2], "fd 12 is not input.txt any more");
    CHECK(lseek(out, 0, SEEK_CUR) == 1234, "out.txt offset %ld, expected 1234",
          (long)lseek(out, 0, SEEK_CUR));
    CHECK(lseek(ro, 0, SEEK_CUR) == 5, "input.txt offset %ld, expected 5",
          (long)lseek(ro, 0, SEEK_CUR));
    int fl = fcntl(out, F_GETFL);
    CHECK((fl & O_ACCMODE) == O_RDWR && !(fl & (O_APPEND | O_NONBLOCK)), "out.txt flags %#o", fl);
    fl = fcntl(app, F_GETFL);
    CHECK((fl & O_ACCMODE) == O_WRONLY && (fl & O_APPEND), "append.log flags %#o, expected O_APPEND",
          fl);
    fl = fcntl(ro, F_GETFL);
    CHECK((fl & O_ACCMODE) == O_RDONLY && (fl & O_NONBLOCK), "input.txt flags %#o, expected O_NONBLOCK",
          fl);
    CHECK(fcntl(ro, F_GETFD) == FD_CLOEXEC, "input.txt lost FD_CLOEXEC");
    CHECK(fcntl(out, F_GETFD) == 0, "out.txt gained FD_CLOEXEC");
    CHECK(fcntl(13, F_GETFD) == -1 && errno == EBADF, "fd 13 was never opened but is open now");

    CHECK(lseek(14, 0, SEEK_CUR) == 1234 && lseek(14, 4321, SEEK_SET) == 4321 &&
              lseek(out, 0, SEEK_CUR) == 4321 && lseek(out, 1234, SEEK_SET) == 1234,
          "fds 10 and 14 no longer share one open file (offset)");
    CHECK(write(out, "XYZ", 3) == 3, "write to out.txt failed");
    memcpy(buf + 1234, "XYZ", 3);
    CHECK(pread(out, got, sizeof got, 0) == sizeof got && memcmp(got, buf, sizeof buf) == 0,
          "out.txt does not hold its content with XYZ at 1234");
    CHECK(lseek(app, 0, SEEK_SET) == 0 && write(app, "line2\n", 6) == 6, "append failed");
    snprintf(path, sizeof path, "%s/append.log", d);
    FILE *f = fopen(path, "r");
    char text[64] = "";
    ssize_t n = f ? (ssize_t)fread(text, 1, sizeof text - 1, f) : 0;
    CHECK(n == 12 && strcmp(text, "line1\nline2\n") == 0, "append.log is \"%s\"", text);
    n = read(ro, got, 5);
    CHECK(n == 5 && memcmp(got, "World", 5) == 0, "input.txt: the next 5 bytes are not \"World\"");
    return finish();
}
