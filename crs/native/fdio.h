/* Whole writes and reads on a descriptor, retried after EINTR and short counts: shared by the
 * mtcp kernel and the blcr module. They return 0 or -errno and call nothing that allocates or
 * takes a lock (the mtcp kernel uses them while the other threads of its process are held). */
#ifndef PYCRS_FDIO_H
#define PYCRS_FDIO_H

#include <errno.h>
#include <stddef.h>
#include <sys/types.h>
#include <unistd.h>

/* n bytes at p to fd, at most 1 GiB per write(). */
static inline int fdio_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1UL << 30) ? (1UL << 30) : n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Exactly n bytes from fd into p: -ENODATA when the file ends first. */
static inline int fdio_read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ENODATA;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

#endif
