/* mtcp kernel: reading /proc without malloc: a whole file into a buffer of the kernel's own, a
 * link, the numbers listed in a directory (threads, descriptors), a field of /proc/self/stat.
 * Failures are recorded with the path and the errno. */
#include "kernel.h"

/* The whole of a (/proc) file into b (replacing its content); -1 with the error recorded. */
int mtcp_read_file(const char *path, struct buf *b)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mtcp_fail("reading %s: %s", path, errname(errno));
    b->len = 0;
    for (;;) {
        if (mtcp_buf_reserve(b, 65536) < 0) {
            close(fd);
            return -1;
        }
        ssize_t n = read(fd, b->p + b->len, b->cap - b->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return mtcp_fail("reading %s: %s", path, errname(e));
        }
        if (n == 0)
            break;
        b->len += (size_t)n;
    }
    b->p[b->len] = 0;
    close(fd);
    return 0;
}

int mtcp_readlink(const char *path, char *out, size_t cap)
{
    ssize_t n = readlink(path, out, cap - 1);
    if (n < 0)
        return mtcp_fail("reading link %s: %s", path, errname(errno));
    out[n] = 0;
    return (int)n;
}

/* Numbers in a directory of /proc (tasks, descriptors) into out; returns the count or -1. */
int mtcp_list_numbers(const char *path, int *out, int max)
{
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return mtcp_fail("listing %s: %s", path, errname(errno));
    char d[8192];
    int n = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, dfd, d, sizeof d);
        if (got < 0) {
            int e = errno;
            close(dfd);
            return mtcp_fail("listing %s: %s", path, errname(e));
        }
        if (got == 0)
            break;
        for (long off = 0; off < got;) {
            struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *e =
                (void *)(d + off);
            off += e->reclen;
            if (e->name[0] < '0' || e->name[0] > '9')
                continue;
            int v = atoi(e->name);
            if (v == dfd && strstr(path, "/fd"))
                continue; /* the listing's own descriptor */
            if (n < max)
                out[n++] = v;
        }
    }
    close(dfd);
    /* sorted, ascending */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            int t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

/* Field n (from 1, as in proc(5)) of /proc/self/stat */
int64_t mtcp_stat_field(const char *stat, int n)
{
    const char *p = strrchr(stat, ')');
    if (!p)
        return 0;
    p += 2;
    for (int i = 3; i < n && *p; i++) {
        while (*p && *p != ' ')
            p++;
        while (*p == ' ')
            p++;
    }
    return strtoll(p, NULL, 10);
}
