/* pycrs-mtcp-restart: the two library functions the compiler may emit calls to (struct copies,
 * zeroed arrays) in a program that has no libc. Written so that they cannot call themselves:
 * -fno-tree-loop-distribute-patterns, and a fixed 8-byte move. */
#include "restart.h"

void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n >= 8) {
        u64 v;
        __builtin_memcpy(&v, q, 8); /* one move: never a call */
        __builtin_memcpy(p, &v, 8);
        p += 8, q += 8, n -= 8;
    }
    while (n--)
        *p++ = *q++;
    return d;
}

void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}
