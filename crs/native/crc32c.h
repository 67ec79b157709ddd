/* CRC-32C (Castagnoli) with the SSE4.2 instruction: the checksum of image pages, shared by the
 * blcr dumper/restorer, the mtcp kernel and its restart program, so that each checks what the
 * others wrote. Freestanding (the restart program has no libc).
 *
 * One crc32 instruction depends on the one before, so a single chain runs at a third of what the
 * CPU can do; a long buffer is cut in three lanes computed side by side, and their CRCs are
 * joined: the CRC of A then B is the CRC of A shifted over len(B) zero bytes (a multiplication by
 * x^(8 len(B)) modulo the polynomial) xor the CRC of B alone. */
#ifndef PYCRS_CRC32C_H
#define PYCRS_CRC32C_H

#include <nmmintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CRC32C_POLY 0x82f63b78U /* reflected; bit 31 is x^0 */

/* a(x) b(x) modulo the polynomial, both reflected */
static inline uint32_t crc32c_mulmod(uint32_t a, uint32_t b)
{
    uint32_t p = 0;
    for (uint32_t m = 1U << 31; m; m >>= 1) {
        if (a & m)
            p ^= b;
        b = b & 1 ? (b >> 1) ^ CRC32C_POLY : b >> 1;
    }
    return p;
}

/* x^(8 n) modulo the polynomial: what shifting a CRC over n zero bytes multiplies it by */
static inline uint32_t crc32c_x8n(uint64_t n)
{
    uint32_t p = 1U << 31, sq = 1U << 23; /* x^0, and x^8 */
    for (; n; n >>= 1, sq = crc32c_mulmod(sq, sq))
        if (n & 1)
            p = crc32c_mulmod(sq, p);
    return p;
}

__attribute__((target("sse4.2"))) static inline uint64_t crc32c_chain(uint64_t c,
                                                                     const unsigned char *p,
                                                                     size_t n)
{
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return c;
}

/* Continue a CRC (0 to start) over n bytes. */
__attribute__((target("sse4.2"))) static inline uint32_t crc32c(uint32_t crc,
                                                                const unsigned char *p, size_t n)
{
    uint64_t c = ~crc & 0xffffffffU;
    if (n >= 3 * 4096) {
        size_t lane = n / 3 & ~(size_t)7;
        const unsigned char *q = p + lane, *r = p + 2 * lane;
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < lane; i += 8) {
            uint64_t a, b, d;
            memcpy(&a, p + i, 8);
            memcpy(&b, q + i, 8);
            memcpy(&d, r + i, 8);
            c = _mm_crc32_u64(c, a);
            c1 = _mm_crc32_u64(c1, b);
            c2 = _mm_crc32_u64(c2, d);
        }
        uint32_t k = crc32c_x8n(lane);
        c = crc32c_mulmod(k, crc32c_mulmod(k, (uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 3 * lane;
        n -= 3 * lane;
    }
    return ~(uint32_t)crc32c_chain(c, p, n);
}

/* A CRC-32C per chunk of a stream (pages.img has one per MiB): the bytes at p, which start at
 * offset pos of the stream, as far as they stay in the chunk of pos, continue *crc, the CRC of
 * that chunk (started anew at a chunk's first byte). Returns how many bytes that is. */
static inline size_t crc32c_chunk_step(uint32_t *crc, uint64_t pos, uint64_t chunk,
                                       const unsigned char *p, size_t n)
{
    uint64_t in = pos % chunk;
    size_t take = n < chunk - in ? n : (size_t)(chunk - in);
    *crc = crc32c(in ? *crc : 0, p, take);
    return take;
}

#endif
