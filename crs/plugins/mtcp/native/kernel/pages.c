/* mtcp kernel: the page writer: pages.img from the runs of the plan, read from this process's
 * memory (through a bounce buffer where it is unreadable or changes under the writer), a
 * CRC-32C per MiB of pages.img as stored into pages.crc, and an early write-back as it goes. */
#include "kernel.h"

#include <sys/mman.h>

/* Early write-back: each WRITEBACK bytes of pages.img are handed to the disk as soon as they
 * are written (sync_file_range), so that the disk works all along and the fsync at commit finds
 * little left, as the blcr dumper does. */
#define WRITEBACK (8UL << 20)

/* Bytes as they go into pages.img: their CRCs, the write, the write-back. */
int mtcp_store(struct page_writer *w, const unsigned char *p, size_t n)
{
    for (size_t done = 0; done < n;) {
        if (w->pos % CHUNK == 0) {
            uint32_t z = 0;
            if (mtcp_put(w->crcs, &z, 4) < 0)
                return -1;
        }
        size_t take = crc32c_chunk_step((uint32_t *)w->crcs->p + w->pos / CHUNK, w->pos, CHUNK,
                                        p + done, n - done);
        done += take;
        w->pos += take;
    }
    int e = fdio_write_all(w->fd, p, n);
    if (e < 0)
        return mtcp_fail_errno("writing pages.img", -e);
    if (w->writeback && w->pos - w->synced >= WRITEBACK) {
        if (sync_file_range(w->fd, (off_t)w->synced, (off_t)(w->pos - w->synced),
                            SYNC_FILE_RANGE_WRITE) < 0) {
            if (errno != EINVAL && errno != ENOSYS && errno != ESPIPE)
                return mtcp_fail_errno("starting the write-back of pages.img (sync_file_range)",
                                       errno);
            w->writeback = 0; /* not here: the fsync at commit does it all */
        }
        w->synced = w->pos;
    }
    return 0;
}

static int finish_pages(struct page_writer *w)
{
    if (mtcp_flush_frame(w) < 0)
        return -1;
    if (w->writeback && w->pos > w->synced &&
        sync_file_range(w->fd, (off_t)w->synced, (off_t)(w->pos - w->synced),
                        SYNC_FILE_RANGE_WRITE) < 0 &&
        errno != EINVAL && errno != ENOSYS && errno != ESPIPE)
        return mtcp_fail_errno("starting the write-back of pages.img (sync_file_range)", errno);
    return 0;
}

/* Write a run: straight from memory, or through the bounce buffer when the memory is not
 * readable (read through /proc/self/mem) or changes under the dump itself (`volatile_`: the
 * manager's stack and the kernel's own data), so that the CRC is that of what is written. */
static int dump_run(struct page_writer *w, uint64_t addr, uint64_t len, int readable, int volatile_)
{
    if (readable && !volatile_)
        return mtcp_emit_pages(w, (const unsigned char *)addr, len);
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done > (8UL << 20) ? (8UL << 20) : len - done;
        ssize_t got = n;
        if (readable)
            memcpy(w->bounce, (const void *)(addr + done), n);
        else
            got = pread(w->mem_fd, w->bounce, n, (off_t)(addr + done));
        if (got != (ssize_t)n)
            return mtcp_fail("reading unreadable memory at %#lx through /proc/self/mem: %s",
                             (unsigned long)(addr + done), got < 0 ? errname(errno) : "short read");
        if (mtcp_emit_pages(w, w->bounce, n) < 0)
            return -1;
        done += n;
    }
    return 0;
}

/* pages.img and pages.crc from the runs of the plan, read from this process's memory. */
int mtcp_write_pages(struct plan *P, int dirfd, int level, unsigned char *codec,
                     uint64_t *stored)
{
    int rc = 0, n = P->nvmas;
    const size_t *first = (const size_t *)P->idx.p;
    struct page_writer w = {.fd = -1, .mem_fd = -1, .crcs = &P->crcs, .writeback = 1,
                            .level = level};
    if (level)
        mtcp_codec_attach(&w, codec);
    w.fd = mtcp_open_out(dirfd, "pages.img");
    if (w.fd < 0)
        rc = -1;
    P->crcs.len = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        struct vma *v = (struct vma *)P->vb.p + i;
        int readable = v->perms[0] == 'r';
        if (!readable && first[i + 1] > first[i] && w.mem_fd < 0) {
            w.mem_fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
            if (w.mem_fd < 0) {
                rc = mtcp_fail_errno("opening /proc/self/mem", errno);
                break;
            }
            mtcp_own_add(w.mem_fd);
        }
        uint64_t here = (uint64_t)&here, kdata = (uint64_t)&mtcp;
        int volatile_ = (v->start <= here && here < v->end) ||
            (v->start <= kdata && kdata < v->end);
        if ((!readable || volatile_) && !w.bounce && first[i + 1] > first[i]) {
            w.bounce = mmap(NULL, 8UL << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (w.bounce == MAP_FAILED) {
                w.bounce = NULL;
                rc = mtcp_fail_errno("allocating a buffer", errno);
                break;
            }
        }
        for (size_t k = first[i]; k < first[i + 1] && rc == 0; k++) {
            uint64_t *pr = (uint64_t *)P->runs.p + 2 * k;
            rc = dump_run(&w, pr[0], pr[1] * PAGE, readable, volatile_);
        }
    }
    if (rc == 0)
        rc = finish_pages(&w);
    if (w.fd >= 0)
        mtcp_close_out(w.fd);
    if (w.mem_fd >= 0) {
        mtcp_own_del(w.mem_fd);
        close(w.mem_fd);
    }
    if (w.bounce)
        munmap(w.bounce, 8UL << 20);
    if (rc < 0)
        return -1;
    *stored = w.pos;
    return mtcp_write_whole(dirfd, "pages.crc", P->crcs.p, P->crcs.len);
}
