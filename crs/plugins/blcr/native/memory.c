/* blcr module: another process's memory: reads and writes with process_vm_readv/writev, and the
 * runs of pages a mapping must save, from its pagemap (crs/native/pagemap.h, as the mtcp kernel
 * does for its own process). */
#include "blcr.h"

#include <sys/uio.h>

#include "pagemap.h"

long blcr_read_mem(int pid, uint64_t addr, void *buf, size_t len)
{
    struct iovec l = {buf, len}, r = {(void *)addr, len};
    ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
    return n < 0 ? -errno : n;
}

long blcr_write_mem(int pid, uint64_t addr, const void *buf, size_t len)
{
    struct iovec l = {(void *)buf, len}, r = {(void *)addr, len};
    ssize_t n = process_vm_writev(pid, &l, 1, &r, 1, 0);
    return n < 0 ? -errno : n;
}

struct runs_out {
    uint64_t *runs;
    long n, max;
};

static long put_run(void *arg, uint64_t addr, uint64_t pages)
{
    struct runs_out *o = arg;
    if (o->n >= o->max)
        return -ENOSPC;
    o->runs[2 * o->n] = addr;
    o->runs[2 * o->n + 1] = pages;
    o->n++;
    return 0;
}

/* Runs of pages of [start, end) that hold data of the process's own (crs/native/pagemap.h).
 * Writes (address, pages) pairs; returns the number of runs, or -ENOSPC when `max` is too
 * small. */
long blcr_scan_pages(int pagemap_fd, uint64_t start, uint64_t end, int private_file,
                     uint64_t *runs, long max)
{
    struct runs_out o = {runs, 0, max};
    long r = pagemap_runs(pagemap_fd, start, end, private_file, put_run, &o);
    return r < 0 ? r : o.n;
}
