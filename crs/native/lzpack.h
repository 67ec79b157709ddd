/* lzpack: a small LZ77 byte codec for checkpoint images, shared by the mtcp kernel (which
 * compresses while threads are held or in a forked child), the blcr cffi module (which
 * decompresses for the ptrace restorer) and the static restart program. It is freestanding on
 * purpose: no libc call at all, not even memcpy, since the restart program is built with
 * -nostdlib and the kernel may not take a lock of libc's while it works.
 *
 * Stream format ("lzp1"), a sequence of tokens, each starting with a tag byte:
 *
 *   0LLLLLLL                   literals: L+1 bytes (1..127) follow the tag; L = 127 means a
 *                              varint V follows first and the count is 128 + V
 *   10MMMMMM varint(D)         match: copy M+4 bytes (4..66) from D bytes back (D >= 1);
 *                              M = 63 means a varint V follows the tag, before D, and the
 *                              length is 67 + V
 *   11MMMMMM                   repeat: a match with the distance of the previous match; the
 *                              length as for a match (varint V after the tag when M = 63)
 *
 * varint: 7 bits per byte, least significant first, high bit set on every byte but the last;
 * at most 5 bytes (a value below 2^32). A distance may reach back to the start of the block
 * and no further; the block ends with its last token, so there is no end marker. Each block
 * is independent (nothing carries over between calls).
 *
 * A repeat token is what makes arrays of fixed-size records cheap: the distance of the record
 * size recurs, and each match after the first costs one byte.
 *
 * Levels: 1 (fast) is greedy with one hash probe per position plus a check of the repeat
 * distance, and it strides faster and faster through data that does not match, so that random
 * floats go at memory-copy speed; 2 (strong) follows hash chains and looks one byte ahead for
 * a longer match before it takes one (lazy matching).
 */
#ifndef PYCRS_LZPACK_H
#define PYCRS_LZPACK_H

#include <stddef.h>
#include <stdint.h>

/* GCC turns byte loops into memcpy/memset calls unless told not to: there is no libc here. */
#if defined(__GNUC__) && !defined(__clang__)
#define LZP_FN static __attribute__((optimize("no-tree-loop-distribute-patterns"), unused))
#else
#define LZP_FN static __attribute__((unused))
#endif

#define LZP_FAST_BITS 14
#define LZP_STRONG_BITS 16
#define LZP_WINDOW (1UL << 20) /* strong: the chain table covers this much of the past */
#define LZP_CHAIN 24
#define LZP_MIN 4
/* bytes of workspace lzp_compress needs (level 2; level 1 uses the first 64 KiB) */
#define LZP_WORKSPACE ((sizeof(uint32_t) << LZP_STRONG_BITS) + sizeof(uint32_t) * LZP_WINDOW)

typedef uint32_t __attribute__((aligned(1), may_alias)) lzp_u32;
typedef uint64_t __attribute__((aligned(1), may_alias)) lzp_u64;

/* The most lzp_compress can write for n bytes: literals only, a tag per 127 bytes at worst
 * (a long literal run costs less). */
LZP_FN size_t lzp_bound(size_t n) { return n + n / 127 + 16; }

LZP_FN uint32_t lzp_hash(uint32_t v, int bits) { return (v * 2654435761U) >> (32 - bits); }

/* Bytes that match at a and b, up to limit (b < a; reads of 8 stay below limit). */
LZP_FN size_t lzp_extend(const uint8_t *a, const uint8_t *b, const uint8_t *limit)
{
    const uint8_t *start = a;
    while (a + 8 <= limit) {
        uint64_t x = *(const lzp_u64 *)a ^ *(const lzp_u64 *)b;
        if (x)
            return (size_t)(a - start) + ((unsigned)__builtin_ctzll(x) >> 3);
        a += 8;
        b += 8;
    }
    while (a < limit && *a == *b) {
        a++;
        b++;
    }
    return (size_t)(a - start);
}

struct lzp_out {
    uint8_t *p, *end;
    int full;
};

LZP_FN void lzp_byte(struct lzp_out *o, uint8_t b)
{
    if (o->p < o->end)
        *o->p++ = b;
    else
        o->full = 1;
}

LZP_FN void lzp_varint(struct lzp_out *o, uint32_t v)
{
    while (v >= 0x80) {
        lzp_byte(o, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    lzp_byte(o, (uint8_t)v);
}

LZP_FN void lzp_literals(struct lzp_out *o, const uint8_t *s, size_t n)
{
    while (n && !o->full) {
        size_t take = n;
        if (take <= 127) {
            lzp_byte(o, (uint8_t)(take - 1));
        } else {
            if (take > 128 + 0xFFFFFFF0UL)
                take = 128 + 0xFFFFFFF0UL;
            lzp_byte(o, 127);
            lzp_varint(o, (uint32_t)(take - 128));
        }
        if ((size_t)(o->end - o->p) < take) {
            o->full = 1;
            return;
        }
        size_t i = 0;
        for (; i + 8 <= take; i += 8)
            *(lzp_u64 *)(o->p + i) = *(const lzp_u64 *)(s + i);
        for (; i < take; i++)
            o->p[i] = s[i];
        o->p += take;
        s += take;
        n -= take;
    }
}

LZP_FN void lzp_match(struct lzp_out *o, size_t len, size_t dist, size_t *rep)
{
    while (len >= LZP_MIN && !o->full) {
        size_t take = len > 67 + 0xFFFFFFF0UL ? 67 + 0xFFFFFFF0UL : len;
        uint8_t kind = dist == *rep ? 0xC0 : 0x80;
        if (take - LZP_MIN < 63) {
            lzp_byte(o, (uint8_t)(kind | (take - LZP_MIN)));
        } else {
            lzp_byte(o, (uint8_t)(kind | 63));
            lzp_varint(o, (uint32_t)(take - 67));
        }
        if (kind == 0x80)
            lzp_varint(o, (uint32_t)dist);
        *rep = dist;
        len -= take;
    }
}

/* Compress n bytes of src into dst (cap bytes); returns the compressed size, or 0 when it does
 * not fit in cap (the caller then stores the block raw). workspace: LZP_WORKSPACE bytes,
 * suitably aligned for uint32_t; its content does not matter. */
LZP_FN size_t lzp_compress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, int level,
                           void *workspace)
{
    struct lzp_out o = {dst, dst + cap, 0};
    uint32_t *head = workspace;
    uint32_t *prev = head + (1UL << LZP_STRONG_BITS);
    int strong = level >= 2, bits = strong ? LZP_STRONG_BITS : LZP_FAST_BITS;
    const uint8_t *ip = src, *anchor = src, *end = src + n;
    const uint8_t *limit = n > 12 ? end - 8 : src; /* 4-byte loads and matches stop here */
    size_t rep = 0;
    if (n > 0xFFFFFFFFUL)
        return 0; /* positions are 32-bit */
    for (size_t i = 0; i < (1UL << bits); i++)
        head[i] = strong ? 0xFFFFFFFFU : 0;
    size_t misses = 0;
    while (ip < limit) {
        size_t pos = (size_t)(ip - src), best = 0, dist = 0;
        uint32_t h = lzp_hash(*(const lzp_u32 *)ip, bits);
        /* the repeat distance first: for records of a fixed size it is the match */
        if (rep && pos >= rep && *(const lzp_u32 *)(ip - rep) == *(const lzp_u32 *)ip) {
            best = lzp_extend(ip, ip - rep, end);
            dist = rep;
        }
        if (!strong) {
            uint32_t cand = head[h];
            head[h] = (uint32_t)pos;
            if (!best && cand < pos && *(const lzp_u32 *)(src + cand) == *(const lzp_u32 *)ip) {
                best = lzp_extend(ip, src + cand, end);
                dist = pos - cand;
            }
        } else {
            uint32_t cand = head[h];
            head[h] = (uint32_t)pos;
            prev[pos & (LZP_WINDOW - 1)] = cand;
            for (int depth = 0; depth < LZP_CHAIN && cand != 0xFFFFFFFFU && cand < pos &&
                                pos - cand < LZP_WINDOW;
                 depth++) {
                if (ip + best >= end)
                    break; /* nothing longer is possible */
                if (src[cand + best] == ip[best] &&
                    *(const lzp_u32 *)(src + cand) == *(const lzp_u32 *)ip) {
                    size_t l = lzp_extend(ip, src + cand, end);
                    if (l > best + (pos - cand != rep)) { /* a new distance costs bytes */
                        best = l;
                        dist = pos - cand;
                    }
                }
                uint32_t next = prev[cand & (LZP_WINDOW - 1)];
                if (next >= cand)
                    break; /* overwritten by a newer position: the chain ends */
                cand = next;
            }
            /* lazy: a longer match one byte on is worth a literal */
            if (best >= LZP_MIN && best < 64 && ip + 1 < limit) {
                size_t pos1 = pos + 1;
                uint32_t h1 = lzp_hash(*(const lzp_u32 *)(ip + 1), bits);
                uint32_t c1 = head[h1];
                if (c1 != 0xFFFFFFFFU && c1 < pos1 && pos1 - c1 < LZP_WINDOW &&
                    *(const lzp_u32 *)(src + c1) == *(const lzp_u32 *)(ip + 1)) {
                    size_t l1 = lzp_extend(ip + 1, src + c1, end);
                    if (l1 > best + 1) {
                        head[h1] = (uint32_t)pos1;
                        prev[pos1 & (LZP_WINDOW - 1)] = c1;
                        ip++;
                        pos = pos1;
                        best = l1;
                        dist = pos1 - c1;
                    }
                }
            }
        }
        if (best < LZP_MIN) {
            /* stride faster the longer nothing matches: incompressible data costs little */
            misses++;
            ip += 1 + (misses >> (strong ? 7 : 5));
            continue;
        }
        misses = 0;
        lzp_literals(&o, anchor, (size_t)(ip - anchor));
        lzp_match(&o, best, dist, &rep);
        if (o.full)
            return 0;
        const uint8_t *stop = ip + best;
        if (strong) { /* index the matched bytes too (a few, for long runs) */
            for (size_t k = 1; k < best && ip + k < limit && k < 32; k++) {
                size_t p = pos + k;
                uint32_t hk = lzp_hash(*(const lzp_u32 *)(src + p), bits);
                prev[p & (LZP_WINDOW - 1)] = head[hk];
                head[hk] = (uint32_t)p;
            }
        } else if (stop - 2 > src && stop - 2 < limit) {
            head[lzp_hash(*(const lzp_u32 *)(stop - 2), bits)] = (uint32_t)(stop - 2 - src);
        }
        ip = anchor = stop;
    }
    lzp_literals(&o, anchor, (size_t)(end - anchor));
    return o.full ? 0 : (size_t)(o.p - dst);
}

/* A varint at *pp (below end); -1 when malformed or cut short. */
LZP_FN long lzp_get_varint(const uint8_t **pp, const uint8_t *end)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (p >= end)
            return -1;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            if (v > 0xFFFFFFFFULL)
                return -1;
            *pp = p;
            return (long)v;
        }
    }
    return -1;
}

/* Decompress n bytes of src into dst (cap bytes); returns the bytes produced, or -1 when the
 * input is malformed in any way (it never reads or writes outside the two buffers). */
LZP_FN long lzp_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
    const uint8_t *ip = src, *iend = src + n;
    uint8_t *op = dst, *oend = dst + cap;
    size_t rep = 0;
    while (ip < iend) {
        uint8_t tag = *ip++;
        if (!(tag & 0x80)) {
            size_t len = (size_t)tag + 1;
            if (tag == 127) {
                long v = lzp_get_varint(&ip, iend);
                if (v < 0)
                    return -1;
                len = 128 + (size_t)v;
            }
            if ((size_t)(iend - ip) < len || (size_t)(oend - op) < len)
                return -1;
            size_t i = 0;
            for (; i + 8 <= len; i += 8)
                *(lzp_u64 *)(op + i) = *(const lzp_u64 *)(ip + i);
            for (; i < len; i++)
                op[i] = ip[i];
            ip += len;
            op += len;
            continue;
        }
        size_t len = (size_t)(tag & 63) + LZP_MIN;
        if ((tag & 63) == 63) {
            long v = lzp_get_varint(&ip, iend);
            if (v < 0)
                return -1;
            len = 67 + (size_t)v;
        }
        size_t dist = rep;
        if (!(tag & 0x40)) {
            long v = lzp_get_varint(&ip, iend);
            if (v < 0)
                return -1;
            dist = (size_t)v;
        }
        if (dist == 0 || dist > (size_t)(op - dst) || (size_t)(oend - op) < len)
            return -1;
        rep = dist;
        const uint8_t *m = op - dist;
        size_t i = 0;
        if (dist < 8) {
            /* a short period: spell out a whole multiple of it of at least 8 bytes, then copy
             * words from that far back (the same bytes, as the data repeats) */
            size_t wide = dist;
            while (wide < 8)
                wide += dist;
            for (; i < len && i < wide; i++)
                op[i] = m[i];
            for (; i + 8 <= len; i += 8)
                *(lzp_u64 *)(op + i) = *(const lzp_u64 *)(op + i - wide);
            for (; i < len; i++)
                op[i] = op[i - wide];
        } else {
            for (; i + 8 <= len; i += 8) /* dist >= 8: each word is written before it is read */
                *(lzp_u64 *)(op + i) = *(const lzp_u64 *)(m + i);
            for (; i < len; i++)
                op[i] = m[i];
        }
        op += len;
    }
    return (long)(op - dst);
}

/* -- frames: how a compressed pages.img holds the page stream --------------------------------
 *
 * One frame per LZP_FRAME bytes of the logical stream (the bytes an uncompressed pages.img
 * would hold; the last frame may be shorter): an 8-byte header, little-endian uint32 raw_len
 * (1..LZP_FRAME) then uint32 stored (bit 31 set: the payload is raw_len bytes stored as they
 * are; otherwise the low 31 bits are the length of an lzp1 block), then the payload. */
#define LZP_FRAME (1UL << 20)
#define LZP_FRAME_HEADER 8
#define LZP_STORED_RAW 0x80000000U

LZP_FN void lzp_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

LZP_FN uint32_t lzp_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Check a frame header: 0 with the raw length, the payload length and whether it is stored
 * raw; -1 when no valid frame could start with it. */
LZP_FN int lzp_frame_header(const uint8_t *h, uint32_t *raw_len, uint32_t *payload, int *raw)
{
    uint32_t r = lzp_get_le32(h), s = lzp_get_le32(h + 4);
    *raw_len = r;
    *raw = (s & LZP_STORED_RAW) != 0;
    *payload = *raw ? r : s;
    if (r == 0 || r > LZP_FRAME)
        return -1;
    if (*raw ? (s & ~LZP_STORED_RAW) != 0 && (s & ~LZP_STORED_RAW) != r
             : s == 0 || s > lzp_bound(LZP_FRAME))
        return -1;
    return 0;
}

#endif
