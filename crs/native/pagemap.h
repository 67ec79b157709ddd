/* Which pages of a mapping an image must carry, from /proc/PID/pagemap: shared by the mtcp kernel
 * (its own process) and the blcr dumper (another process), so that both images hold the same
 * pages of the same mappings.
 *
 * A page is the process's own when it is present or swapped out; in a private file mapping only
 * when it was copied on write (a page still of the file is read from the file again). */
#ifndef PYCRS_PAGEMAP_H
#define PYCRS_PAGEMAP_H

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PAGEMAP_PAGE 4096UL

/* Runs of such pages in [start, end), each handed to emit(arg, address, pages) in address order.
 * Returns 0; -errno when reading pagemap fails (-EIO when it ends early); or what emit returned
 * when that was negative (the scan stops there). */
static inline long pagemap_runs(int pagemap_fd, uint64_t start, uint64_t end, int private_file,
                                long (*emit)(void *arg, uint64_t addr, uint64_t pages), void *arg)
{
    enum { BATCH = 4096 };
    static uint64_t ent[BATCH];
    uint64_t run_start = 0, run_len = 0;
    long r;
    for (uint64_t page = start / PAGEMAP_PAGE; page < end / PAGEMAP_PAGE;) {
        uint64_t want = end / PAGEMAP_PAGE - page;
        if (want > BATCH)
            want = BATCH;
        ssize_t n = pread(pagemap_fd, ent, want * 8, (off_t)(page * 8));
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        for (long i = 0; i < n / 8; i++, page++) {
            uint64_t e = ent[i];
            int mine = (e & PM_SWAPPED) || ((e & PM_PRESENT) && !(private_file && (e & PM_FILE)));
            if (mine && run_len && run_start + run_len * PAGEMAP_PAGE == page * PAGEMAP_PAGE) {
                run_len++;
            } else if (mine) {
                if (run_len && (r = emit(arg, run_start, run_len)) < 0)
                    return r;
                run_start = page * PAGEMAP_PAGE;
                run_len = 1;
            }
        }
    }
    if (run_len && (r = emit(arg, run_start, run_len)) < 0)
        return r;
    return 0;
}

#endif
