/* pycrs-mtcp-restart: pages.img into place, along a cursor over the image's runs of pages. Raw
 * pages are read straight to their addresses while a second thread checks the CRC-32C of every
 * MiB behind the reads (a ring of the pieces read); compressed pages are read a CRC chunk at a
 * time, checked, and cut into lzp1 frames that are decompressed and copied to their runs.
 * Corruption, truncation and a file that does not fit the mappings each stop the restore. */
#include "restart.h"

static u64 cursor_room(struct cursor *c, unsigned char **at)
{
    while (c->i < c->nruns && c->off == c->runs[2 * c->i + 1] * PAGE) {
        c->i++;
        c->off = 0;
    }
    if (c->i == c->nruns)
        return 0;
    *at = (unsigned char *)(c->runs[2 * c->i] + c->off);
    return c->runs[2 * c->i + 1] * PAGE - c->off;
}

static void check_bytes(struct check *k, const unsigned char *p, u64 n)
{
    const struct plan *P = rs_plan;
    while (n) {
        u64 take = crc32c_chunk_step(&k->crc, k->pos, k->chunk, p, n);
        k->pos += take;
        p += take;
        n -= take;
        if (k->pos % k->chunk == 0 || k->pos == P->pages_size) {
            u64 idx = (k->pos - 1) / k->chunk;
            if (idx >= k->ncrcs || k->crcs[idx] != k->crc)
                rs_die("pages.img does not match its CRC (the snapshot is corrupted)", EBADMSG);
        }
    }
}

static void read_at(void *dst, u64 n, u64 off)
{
    const struct plan *P = rs_plan;
    unsigned char *p = dst;
    while (n) {
        long got = sys(NR_pread64, P->pages_fd, p, n > (1UL << 30) ? 1UL << 30 : n, off);
        if (got == -EINTR)
            continue;
        rs_must(got, "reading pages.img");
        if (got == 0)
            rs_die("pages.img is truncated", EIO);
        p += got, n -= (u64)got, off += (u64)got;
    }
}

/* Raw pages are read straight into place while a second thread checks their CRCs behind the
 * reads (on two CPUs the check then costs no time): a ring of the pieces read, in file order; a
 * piece of length 0 ends it. */
#define RING 64
static struct {
    u64 addr[RING], len[RING];
    uint32_t produced, consumed;
    int32_t tid; /* the checker's; the kernel clears it when the checker has ended */
    struct check *k;
} Q;

static void futex_wait(uint32_t *w, uint32_t v) { sys(NR_futex, w, FUTEX_WAIT | FUTEX_PRIVATE, v, 0); }
static void futex_wake(uint32_t *w) { sys(NR_futex, w, FUTEX_WAKE | FUTEX_PRIVATE, 0x7fffffff); }

static void checker_main(const void *arg)
{
    (void)arg;
    for (uint32_t c = 0;; c++) {
        uint32_t p;
        while ((p = __atomic_load_n(&Q.produced, __ATOMIC_ACQUIRE)) == c)
            futex_wait(&Q.produced, p);
        u64 n = Q.len[c % RING];
        if (n)
            check_bytes(Q.k, (const unsigned char *)Q.addr[c % RING], n);
        __atomic_store_n(&Q.consumed, c + 1, __ATOMIC_RELEASE);
        futex_wake(&Q.consumed);
        if (!n)
            for (;;)
                sys(NR_exit, 0);
    }
}

static void checked(u64 addr, u64 n)
{
    uint32_t p = Q.produced, c;
    while (p - (c = __atomic_load_n(&Q.consumed, __ATOMIC_ACQUIRE)) >= RING)
        futex_wait(&Q.consumed, c);
    Q.addr[p % RING] = addr;
    Q.len[p % RING] = n;
    __atomic_store_n(&Q.produced, p + 1, __ATOMIC_RELEASE);
    futex_wake(&Q.produced);
}

void rs_load_raw(struct cursor *c, struct check *k, unsigned char *checker_stack)
{
    const struct plan *P = rs_plan;
    Q.k = k;
    Q.tid = -1;
    u64 args[11] = {0};
    args[0] = THREAD_FLAGS | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
    args[2] = (u64)&Q.tid; /* child_tid */
    args[5] = (u64)checker_stack;
    args[6] = THREAD_STACK;
    rs_must(rs_clone3_thread(args, sizeof args, checker_main, 0),
            "starting the CRC checker (clone3)");
    unsigned char *at;
    u64 room, pos = 0;
    while ((room = cursor_room(c, &at))) {
        u64 n = k->chunk - pos % k->chunk;
        if (n > room)
            n = room;
        if (pos + n > P->pages_size)
            rs_die("pages.img is truncated", EIO);
        read_at(at, n, pos);
        checked((u64)at, n);
        c->off += n;
        pos += n;
    }
    checked(0, 0);
    for (int32_t t; (t = __atomic_load_n(&Q.tid, __ATOMIC_ACQUIRE)) != 0;)
        sys(NR_futex, &Q.tid, FUTEX_WAIT, t, 0); /* the kernel's wake at exit is not private */
    if (pos != P->pages_size || k->pos != pos)
        rs_die("pages.img is longer than the image's mappings", EPROTO);
}

/* Compressed pages (lzp1 frames, crs/native/lzpack.h): the file is read a CRC chunk at a time,
 * checked, and cut into frames; each frame is decompressed and copied to its runs. */
struct reader {
    unsigned char *chunk, *payload, *out;
    u64 len, at;
    struct check *k;
};

static void take(struct reader *r, unsigned char *dst, u64 n)
{
    const struct plan *P = rs_plan;
    while (n) {
        if (r->at == r->len) {
            u64 left = P->pages_size - r->k->pos;
            if (!left)
                rs_die("pages.img is truncated", EIO);
            r->len = left < P->chunk ? left : P->chunk;
            r->at = 0;
            read_at(r->chunk, r->len, r->k->pos);
            check_bytes(r->k, r->chunk, r->len);
        }
        u64 t = r->len - r->at < n ? r->len - r->at : n;
        memcpy(dst, r->chunk + r->at, t);
        r->at += t, dst += t, n -= t;
    }
}

void rs_load_compressed(struct cursor *c, struct check *k, unsigned char *buffers)
{
    const struct plan *P = rs_plan;
    struct reader r = {buffers, buffers + LZP_FRAME, buffers + LZP_FRAME + lzp_bound(LZP_FRAME),
                       0, 0, k};
    unsigned char *at;
    u64 room;
    while ((room = cursor_room(c, &at))) {
        unsigned char head[LZP_FRAME_HEADER];
        uint32_t raw_len, payload;
        int raw;
        take(&r, head, sizeof head);
        if (lzp_frame_header(head, &raw_len, &payload, &raw) < 0)
            rs_die("pages.img: a malformed frame header (the snapshot is corrupted)", EBADMSG);
        take(&r, raw ? r.out : r.payload, payload);
        if (!raw && lzp_decompress(r.payload, payload, r.out, raw_len) != (long)raw_len)
            rs_die("pages.img: a frame does not decompress (the snapshot is corrupted)", EBADMSG);
        for (u64 done = 0; done < raw_len;) {
            if (!(room = cursor_room(c, &at)))
                rs_die("pages.img holds more pages than the image's mappings", EPROTO);
            u64 n = raw_len - done < room ? raw_len - done : room;
            memcpy(at, r.out + done, n);
            c->off += n, done += n;
        }
    }
    if (k->pos != P->pages_size || r.at != r.len)
        rs_die("pages.img is longer than the image's mappings", EPROTO);
}
