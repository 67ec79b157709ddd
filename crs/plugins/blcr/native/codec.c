/* blcr module: lzp1 compression (crs/native/lzpack.h) for Python: one block at a time (tests
 * and tools), and a whole compressed pages.img unpacked frame by frame into the page stream the
 * ptrace restorer reads. */
#include "blcr.h"

#include <sys/mman.h>
#include <unistd.h>

#include "fdio.h"
#include "lzpack.h"

static void *lzp_workspace(void)
{
    static void *ws;
    if (!ws) {
        void *p = mmap(NULL, LZP_WORKSPACE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        if (!__sync_bool_compare_and_swap(&ws, NULL, p))
            munmap(p, LZP_WORKSPACE);
    }
    return ws;
}

size_t blcr_lzp_bound(size_t n) { return lzp_bound(n); }

/* One block (for tests and tools): the compressed size, 0 when it does not fit in cap. Not
 * reentrant (one workspace). */
long blcr_lzp_compress(const void *src, size_t n, void *dst, size_t cap, int level)
{
    void *ws = lzp_workspace();
    if (!ws)
        return -ENOMEM;
    return (long)lzp_compress(src, n, dst, cap, level, ws);
}

long blcr_lzp_decompress(const void *src, size_t n, void *dst, size_t cap)
{
    long r = lzp_decompress(src, n, dst, cap);
    return r < 0 ? -EBADMSG : r;
}

/* The frames of a compressed pages.img (in_fd, from its start) into the logical page stream
 * (out_fd, written in order): the bytes produced, which must be raw_total; -EBADMSG for a frame
 * that is malformed (or goes on past raw_total) and -ENODATA for a file that ends early, with
 * the frame's index in *frame; another -errno when reading or writing fails. */
long blcr_lzp_unpack(int in_fd, int out_fd, uint64_t raw_total, uint64_t *frame)
{
    size_t cap = lzp_bound(LZP_FRAME);
    unsigned char *in = mmap(NULL, cap + LZP_FRAME, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (in == MAP_FAILED)
        return -errno;
    unsigned char *out = in + cap;
    uint64_t done = 0;
    long err = 0;
    for (*frame = 0;; (*frame)++) {
        uint8_t h[LZP_FRAME_HEADER];
        ssize_t got = read(in_fd, h, sizeof h);
        if (got < 0 && errno == EINTR) {
            (*frame)--;
            continue;
        }
        if (got < 0) {
            err = -errno;
            break;
        }
        if (got == 0) {
            err = done == raw_total ? 0 : -ENODATA;
            break;
        }
        if (got < (ssize_t)sizeof h) {
            int e = fdio_read_full(in_fd, h + got, sizeof h - (size_t)got);
            if (e) {
                err = e == -ENODATA ? -ENODATA : e;
                break;
            }
        }
        uint32_t raw_len, payload;
        int raw;
        if (lzp_frame_header(h, &raw_len, &payload, &raw) < 0 ||
            (raw_len != LZP_FRAME && done + raw_len != raw_total)) {
            err = -EBADMSG;
            break;
        }
        if (done + raw_len > raw_total) {
            err = -EBADMSG;
            break;
        }
        err = fdio_read_full(in_fd, raw ? out : in, payload);
        if (err)
            break;
        if (!raw && lzp_decompress(in, payload, out, LZP_FRAME) != (long)raw_len) {
            err = -EBADMSG;
            break;
        }
        err = fdio_write_all(out_fd, out, raw_len);
        if (err)
            break;
        done += raw_len;
    }
    munmap(in, cap + LZP_FRAME);
    return err ? err : (long)done;
}
