/* mtcp kernel: buffers of its own and the JSON writer on them. A buffer's memory comes from
 * mmap, never from malloc (while threads are held the manager may not take a lock of libc's),
 * and each live buffer is listed here so that the image leaves it out (memory.c asks
 * mtcp_buf_range). image.json and the replies on the control socket are written with these
 * functions. */
#include "kernel.h"

#include <sys/mman.h>

#define MAX_BUFS 16
static struct buf *bufs[MAX_BUFS];

int mtcp_buf_reserve(struct buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : (1UL << 20);
    while (cap < b->len + more)
        cap *= 2;
    void *p = b->p ? mremap(b->p, b->cap, cap, MREMAP_MAYMOVE)
                   : mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return mtcp_fail_errno("allocating a buffer", errno);
    if (!b->p) {
        for (int i = 0; i < MAX_BUFS; i++)
            if (!bufs[i]) {
                bufs[i] = b;
                break;
            }
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void mtcp_buf_free(struct buf *b)
{
    if (b->p)
        munmap(b->p, b->cap);
    for (int i = 0; i < MAX_BUFS; i++)
        if (bufs[i] == b)
            bufs[i] = NULL;
    b->p = NULL;
    b->len = b->cap = 0;
}

int mtcp_buf_range(int i, uint64_t *lo, uint64_t *hi)
{
    for (int j = 0; j < MAX_BUFS; j++)
        if (bufs[j] && bufs[j]->p && i-- == 0) {
            *lo = (uint64_t)bufs[j]->p;
            *hi = *lo + bufs[j]->cap;
            return 1;
        }
    return 0;
}

void mtcp_bufs_forget(void)
{
    for (int i = 0; i < MAX_BUFS; i++)
        bufs[i] = NULL;
}

int mtcp_put(struct buf *b, const void *s, size_t n)
{
    if (mtcp_buf_reserve(b, n + 1) < 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int mtcp_puts(struct buf *b, const char *s) { return mtcp_put(b, s, strlen(s)); }

int mtcp_put_i64(struct buf *b, int64_t v)
{
    char t[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        t[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        t[n++] = '-';
    char o[24];
    for (int i = 0; i < n; i++)
        o[i] = t[n - 1 - i];
    return mtcp_put(b, o, (size_t)n);
}

int mtcp_put_u64(struct buf *b, uint64_t u)
{
    char t[24], o[24];
    int n = 0;
    do {
        t[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    for (int i = 0; i < n; i++)
        o[i] = t[n - 1 - i];
    return mtcp_put(b, o, (size_t)n);
}

int mtcp_put_hex(struct buf *b, const void *data, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    if (mtcp_buf_reserve(b, 2 * n + 1) < 0)
        return -1;
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        b->p[b->len++] = digits[p[i] >> 4];
        b->p[b->len++] = digits[p[i] & 15];
    }
    b->p[b->len] = 0;
    return 0;
}

/* A JSON string of n bytes (UTF-8 passed through, control characters escaped). */
int mtcp_put_str(struct buf *b, const char *s, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    if (mtcp_buf_reserve(b, 6 * n + 3) < 0)
        return -1;
    b->p[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            b->p[b->len++] = '\\';
            b->p[b->len++] = (char)c;
        } else if (c < 0x20) {
            memcpy(b->p + b->len, "\\u00", 4);
            b->len += 4;
            b->p[b->len++] = digits[c >> 4];
            b->p[b->len++] = digits[c & 15];
        } else {
            b->p[b->len++] = (char)c;
        }
    }
    b->p[b->len++] = '"';
    b->p[b->len] = 0;
    return 0;
}

int mtcp_put_cstr(struct buf *b, const char *s) { return mtcp_put_str(b, s, strlen(s)); }

/* "key": */
int mtcp_key(struct buf *b, const char *k)
{
    if (b->len && b->p[b->len - 1] != '{' && b->p[b->len - 1] != '[' && mtcp_puts(b, ",") < 0)
        return -1;
    if (mtcp_put_cstr(b, k) < 0)
        return -1;
    return mtcp_puts(b, ":");
}

int mtcp_sep(struct buf *b)
{
    if (b->len && b->p[b->len - 1] != '{' && b->p[b->len - 1] != '[')
        return mtcp_puts(b, ",");
    return 0;
}

int mtcp_kv_i64(struct buf *b, const char *k, int64_t v)
{
    return mtcp_key(b, k) < 0 ? -1 : mtcp_put_i64(b, v);
}

int mtcp_kv_u64(struct buf *b, const char *k, uint64_t v)
{
    return mtcp_key(b, k) < 0 ? -1 : mtcp_put_u64(b, v);
}

int mtcp_kv_str(struct buf *b, const char *k, const char *v)
{
    return mtcp_key(b, k) < 0 ? -1 : mtcp_put_cstr(b, v);
}

int mtcp_kv_raw(struct buf *b, const char *k, const char *v)
{
    return mtcp_key(b, k) < 0 ? -1 : mtcp_puts(b, v);
}
