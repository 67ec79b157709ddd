/* blcr module: pages.img. The dump copies the runs of pages out of the process
 * (process_vm_readv, or /proc/PID/mem where they are unreadable) with a CRC-32C per chunk of
 * the output, while a writer thread writes and starts the write-back behind it; a restore
 * checks the CRCs of a snapshot's pages.img through a mapping, beside the stub that reads it. */
#include "blcr.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "crc32c.h"
#include "fdio.h"

#define IO_BUF (8UL << 20)

/* The dump is a pipeline: this thread copies pages out of the process and checksums them into
 * one of SLOTS buffers while a writer thread writes the previous ones and starts their
 * write-back at once (sync_file_range), so the disk works all along instead of at the final
 * fsync. (O_DIRECT was measured slower: one synchronous write at a time leaves the disk idle.) */
#define SLOTS 4

uint32_t blcr_crc32c(const void *p, size_t n) { return crc32c(0, p, n); }

struct writer {
    int fd;
    off_t off;
    unsigned char *bufs;
    size_t len[SLOTS];
    long head, tail; /* slots [tail, head) are full */
    int done;
    long err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->head == w->tail && !w->done)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->head == w->tail) {
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        long slot = w->tail % SLOTS;
        int failed = w->err != 0;
        pthread_mutex_unlock(&w->mu);
        long e = 0;
        if (!failed) {
            e = fdio_write_all(w->fd, w->bufs + slot * IO_BUF, w->len[slot]);
            if (!e && w->off >= 0)
                sync_file_range(w->fd, w->off, (off_t)w->len[slot], SYNC_FILE_RANGE_WRITE);
            w->off += (off_t)w->len[slot];
        }
        pthread_mutex_lock(&w->mu);
        if (e && !w->err)
            w->err = e;
        w->tail++;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

/* Copy the pages of `runs` ((address, pages, unreadable) triples) from the process to `out_fd`,
 * one CRC-32C per `chunk` bytes of output counted from `*pos`: crcs[i] covers output bytes
 * [i*chunk, (i+1)*chunk). Unreadable runs (PROT_NONE) are read through `mem_fd`
 * (/proc/PID/mem). */
long blcr_dump_runs(int pid, int mem_fd, int out_fd, const uint64_t *runs, long nruns,
                    uint64_t *pos, uint32_t *crcs, long ncrcs, uint64_t chunk)
{
    struct writer w;
    memset(&w, 0, sizeof w);
    w.fd = out_fd;
    w.off = lseek(out_fd, 0, SEEK_CUR);
    w.bufs = mmap(NULL, SLOTS * IO_BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                  -1, 0);
    if (w.bufs == MAP_FAILED)
        return -errno;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    pthread_t writer;
    long err = -pthread_create(&writer, NULL, writer_main, &w);
    if (err) {
        munmap(w.bufs, SLOTS * IO_BUF);
        return err;
    }
    for (long i = 0; i < nruns && !err; i++) {
        uint64_t addr = runs[3 * i], left = runs[3 * i + 1] * PAGE;
        int unreadable = (int)runs[3 * i + 2];
        while (left && !err) {
            size_t n = left < IO_BUF ? left : IO_BUF;
            pthread_mutex_lock(&w.mu);
            while (w.head - w.tail == SLOTS)
                pthread_cond_wait(&w.cv, &w.mu);
            err = w.err;
            pthread_mutex_unlock(&w.mu);
            if (err)
                break;
            unsigned char *buf = w.bufs + (w.head % SLOTS) * IO_BUF;
            ssize_t got;
            if (unreadable) {
                got = pread(mem_fd, buf, n, (off_t)addr);
            } else {
                struct iovec l = {buf, n}, r = {(void *)addr, n};
                got = process_vm_readv(pid, &l, 1, &r, 1, 0);
            }
            if (got < 0 || (size_t)got != n) {
                err = got < 0 ? -errno : -EFAULT;
                break;
            }
            for (size_t done = 0; done < n;) { /* along chunk boundaries of the output */
                if ((long)(*pos / chunk) >= ncrcs) {
                    err = -ENOSPC;
                    break;
                }
                size_t take = crc32c_chunk_step(&crcs[*pos / chunk], *pos, chunk, buf + done,
                                                n - done);
                done += take;
                *pos += take;
            }
            pthread_mutex_lock(&w.mu);
            w.len[w.head % SLOTS] = n;
            w.head++;
            pthread_cond_broadcast(&w.cv);
            pthread_mutex_unlock(&w.mu);
            addr += n;
            left -= n;
        }
    }
    pthread_mutex_lock(&w.mu);
    w.done = 1;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(writer, NULL);
    if (!err)
        err = w.err;
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    munmap(w.bufs, SLOTS * IO_BUF);
    return err;
}

