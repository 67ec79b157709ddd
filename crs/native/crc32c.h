/* CRC-32C (Castagnoli) with the SSE4.2 instruction: the checksum of image pages, shared by the
 * blcr dumper/restorer and the mtcp kernel so that each checks what the other wrote. */
#ifndef PYCRS_CRC32C_H
#define PYCRS_CRC32C_H

#include <nmmintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Continue a CRC (0 to start) over n bytes. */
__attribute__((target("sse4.2"))) static inline uint32_t crc32c(uint32_t crc,
                                                                const unsigned char *p, size_t n)
{
    uint64_t c = ~crc & 0xffffffffU;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

#endif
