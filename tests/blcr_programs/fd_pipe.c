/* Pipes with unread data (argv[1] is a work directory):
 *   a pipe (both ends here, fds 30/31) resized to 256 KiB holding 100000 unread bytes, read end
 *   O_NONBLOCK;
 *   a FIFO WORKDIR/fifo (read end fd 32 O_NONBLOCK, write end fd 33) holding 3000 unread bytes.
 * After the restart each read end returns exactly the buffered bytes and then nothing (EAGAIN),
 * the pipe keeps its size, both still carry new data, and the FIFO is still the one at its path
 * (a writer opening the path reaches our read end). */
#include "common.h"

#include <sys/stat.h>

#define PIPE_DATA 100000
#define FIFO_DATA 3000

static void drain(int fd, size_t n, uint64_t seed, const char *what)
{
    static uint8_t buf[PIPE_DATA + 1];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof buf - got);
        if (r <= 0)
            break;
        got += r;
    }
    CHECK(got == n, "%s: %zu bytes buffered, expected %zu", what, got, n);
    CHECK(got < n || check_pattern(buf, n, seed) < 0, "%s: buffered bytes differ", what);
}

int main(int argc, char **argv)
{
    static uint8_t buf[PIPE_DATA];
    int p[2];
    char path[512];
    struct stat st;
    common_init();
    if (argc < 2)
        DIE("usage: fd_pipe WORKDIR");
    if (pipe(p) || dup2(p[0], 30) != 30 || dup2(p[1], 31) != 31)
        DIE("pipe");
    close(p[0]);
    close(p[1]);
    if (fcntl(31, F_SETPIPE_SZ, 256 * 1024) < 0 || fcntl(30, F_SETFL, O_NONBLOCK) != 0)
        DIE("fcntl");
    fill_pattern(buf, PIPE_DATA, 1);
    if (write(31, buf, PIPE_DATA) != PIPE_DATA)
        DIE("write pipe");
    snprintf(path, sizeof path, "%s/fifo", argv[1]);
    if (mkfifo(path, 0600) != 0)
        DIE("mkfifo");
    int r = open(path, O_RDONLY | O_NONBLOCK), w = open(path, O_WRONLY);
    if (r < 0 || w < 0 || dup2(r, 32) != 32 || dup2(w, 33) != 33)
        DIE("open fifo");
    close(r);
    close(w);
    fill_pattern(buf, FIFO_DATA, 2);
    if (write(33, buf, FIFO_DATA) != FIFO_DATA)
        DIE("write fifo");
    int size = fcntl(31, F_GETPIPE_SZ);

    if (sabotage() && read(30, buf, 1) != 1)
        DIE("read");
    ready();
    wait_term();

    CHECK(fstat(30, &st) == 0 && S_ISFIFO(st.st_mode), "fd 30 is not a pipe");
    CHECK(fcntl(30, F_GETFL) & O_NONBLOCK, "the pipe's read end lost O_NONBLOCK");
    CHECK(fcntl(31, F_GETPIPE_SZ) == size, "pipe size %d, expected %d", fcntl(31, F_GETPIPE_SZ),
          size);
    drain(30, PIPE_DATA, 1, "pipe");
    CHECK(write(31, "again", 5) == 5 && read(30, buf, 10) == 5 && memcmp(buf, "again", 5) == 0,
          "the pipe does not carry new data");

    CHECK(fstat(32, &st) == 0 && S_ISFIFO(st.st_mode), "fd 32 is not a FIFO");
    drain(32, FIFO_DATA, 2, "FIFO");
    CHECK(write(33, "fifo!", 5) == 5 && read(32, buf, 10) == 5 && memcmp(buf, "fifo!", 5) == 0,
          "the FIFO does not carry new data");
    int other = open(path, O_WRONLY | O_NONBLOCK); /* fails with ENXIO if no reader */
    CHECK(other >= 0 && write(other, "path", 4) == 4 && read(32, buf, 10) == 4,
          "a writer opening %s does not reach fd 32", path);
    return finish();
}
