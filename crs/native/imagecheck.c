/* The CRC-per-chunk check of an image file (pages.img): every `chunk` bytes carry a CRC-32C,
 * written by the blcr dumper and the mtcp kernel. Checked here for blcr's restorer (beside the
 * stub reading the same file) and for ompi-restart, which checks every rank's image before it
 * starts anything. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>

#include "crc32c.h"

long pycrs_verify_chunks(int fd, uint64_t size, const uint32_t *crcs, long ncrcs, uint64_t chunk,
                         uint64_t *bad_chunk, volatile uint64_t *checked);

/* Returns 0, -EBADMSG with the failing chunk in *bad_chunk, or -errno. Reads through a mapping
 * (no copy); runs with the GIL released. `checked` (may be NULL) is advanced by the bytes of
 * every chunk found good, for a tool's progress bar that reads it from another thread. */
long pycrs_verify_chunks(int fd, uint64_t size, const uint32_t *crcs, long ncrcs, uint64_t chunk,
                         uint64_t *bad_chunk, volatile uint64_t *checked)
{
    if (size == 0)
        return 0;
    if (chunk == 0 || (long)((size + chunk - 1) / chunk) > ncrcs) {
        *bad_chunk = (uint64_t)ncrcs;
        return -EBADMSG;
    }
    unsigned char *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED)
        return -errno;
    if (madvise(m, size, MADV_SEQUENTIAL) != 0) {
        long err = -errno;
        munmap(m, size);
        return err;
    }
    long err = 0;
    for (uint64_t off = 0, i = 0; off < size; off += chunk, i++) {
        uint64_t n = size - off < chunk ? size - off : chunk;
        if (crc32c(0, m + off, n) != crcs[i]) {
            *bad_chunk = i;
            err = -EBADMSG;
            break;
        }
        if (checked)
            *checked += n;
        /* done with it: a big image must not crowd the page cache (advice only) */
        if (off >= 64 * chunk)
            (void)madvise(m + off - 64 * chunk, chunk, MADV_DONTNEED);
    }
    if (munmap(m, size) != 0 && err == 0)
        err = -errno;
    return err;
}
