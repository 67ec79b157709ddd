/* Registers: general purpose, x87, SSE/AVX/AVX-512 and the AVX-512 mask registers, held in
 * the registers themselves by an assembly loop that runs from READY until SIGTERM (so the
 * checkpoint catches the process inside it), plus MXCSR / x87 control word, the fs and gs bases
 * and __thread variables.
 *
 * The loop keeps known values in rbx, rcx, rdx, rsi, r8-r14 and in every vector register, and
 * computes as it goes: r15 counts iterations, r14 += r13 and the last vector register += the one
 * before it (64-bit lanes) on every iteration, so the end values depend on the iteration count. */
#include "common.h"

#include <asm/prctl.h>
#include <fenv.h>
#include <sys/syscall.h>
#include <xmmintrin.h>

enum { NGPR = 11 };

struct regs {
    uint8_t vin[32][64];  /* 0:    vector registers loaded (zmm: 64 bytes, ymm: 32, xmm: 16) */
    uint8_t vout[32][64]; /* 2048: and stored back after the loop */
    uint64_t gin[NGPR];   /* 4096: rbx rcx rdx rsi r8 r9 r10 r11 r12 r13 r14 */
    uint64_t gout[NGPR];  /* 4184 */
    uint64_t kin[8];      /* 4272: k0-k7 (16 bits used) */
    uint64_t kout[8];     /* 4336 */
    uint8_t x87in[16];    /* 4400: an 80-bit value pushed on the x87 stack */
    uint8_t x87out[16];   /* 4416 */
    uint64_t count;       /* 4432 */
} __attribute__((aligned(64)));

_Static_assert(__builtin_offsetof(struct regs, gin) == 4096, "layout");
_Static_assert(__builtin_offsetof(struct regs, gout) == 4184, "layout");
_Static_assert(__builtin_offsetof(struct regs, kin) == 4272, "layout");
_Static_assert(__builtin_offsetof(struct regs, kout) == 4336, "layout");
_Static_assert(__builtin_offsetof(struct regs, x87in) == 4400, "layout");
_Static_assert(__builtin_offsetof(struct regs, x87out) == 4416, "layout");
_Static_assert(__builtin_offsetof(struct regs, count) == 4432, "layout");

static struct regs R;

#define GPR_LOAD                                                                                  \
    "mov 4096+0*8(%%rdi), %%rbx\n\t"                                                              \
    "mov 4096+1*8(%%rdi), %%rcx\n\t"                                                              \
    "mov 4096+2*8(%%rdi), %%rdx\n\t"                                                              \
    "mov 4096+3*8(%%rdi), %%rsi\n\t"                                                              \
    "mov 4096+4*8(%%rdi), %%r8\n\t"                                                               \
    "mov 4096+5*8(%%rdi), %%r9\n\t"                                                               \
    "mov 4096+6*8(%%rdi), %%r10\n\t"                                                              \
    "mov 4096+7*8(%%rdi), %%r11\n\t"                                                              \
    "mov 4096+8*8(%%rdi), %%r12\n\t"                                                              \
    "mov 4096+9*8(%%rdi), %%r13\n\t"                                                              \
    "mov 4096+10*8(%%rdi), %%r14\n\t"                                                             \
    "fldt 4400(%%rdi)\n\t"                                                                        \
    "xor %%r15, %%r15\n\t"
#define GPR_STORE                                                                                 \
    "mov %%rbx, 4184+0*8(%%rdi)\n\t"                                                              \
    "mov %%rcx, 4184+1*8(%%rdi)\n\t"                                                              \
    "mov %%rdx, 4184+2*8(%%rdi)\n\t"                                                              \
    "mov %%rsi, 4184+3*8(%%rdi)\n\t"                                                              \
    "mov %%r8, 4184+4*8(%%rdi)\n\t"                                                               \
    "mov %%r9, 4184+5*8(%%rdi)\n\t"                                                               \
    "mov %%r10, 4184+6*8(%%rdi)\n\t"                                                              \
    "mov %%r11, 4184+7*8(%%rdi)\n\t"                                                              \
    "mov %%r12, 4184+8*8(%%rdi)\n\t"                                                              \
    "mov %%r13, 4184+9*8(%%rdi)\n\t"                                                              \
    "mov %%r14, 4184+10*8(%%rdi)\n\t"                                                             \
    "fstpt 4416(%%rdi)\n\t"                                                                       \
    "mov %%r15, 4432(%%rdi)\n\t"
#define LOOP(vadd)                                                                                \
    "1:\n\t"                                                                                      \
    "inc %%r15\n\t"                                                                               \
    "add %%r13, %%r14\n\t" vadd "cmpl $0, %[flag]\n\t"                                            \
    "je 1b\n\t"
#define GPR_CLOBBERS "rbx", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"

#define ZL(n) "vmovdqu64 " #n "*64(%%rdi), %%zmm" #n "\n\t"
#define ZS(n) "vmovdqu64 %%zmm" #n ", 2048+" #n "*64(%%rdi)\n\t"
#define KL(n) "kmovw 4272+" #n "*8(%%rdi), %%k" #n "\n\t"
#define KS(n) "kmovw %%k" #n ", 4336+" #n "*8(%%rdi)\n\t"
#define Z10(M, a) M(a##0) M(a##1) M(a##2) M(a##3) M(a##4) M(a##5) M(a##6) M(a##7) M(a##8) M(a##9)
#define ZALL(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) Z10(M, 1) Z10(M, 2) M(30) M(31)

__attribute__((target("avx512f"))) static void loop_avx512(void)
{
    __asm__ volatile(GPR_LOAD ZALL(ZL) KL(0) KL(1) KL(2) KL(3) KL(4) KL(5) KL(6) KL(7)
                         LOOP("vpaddq %%zmm30, %%zmm31, %%zmm31\n\t")
                             GPR_STORE ZALL(ZS) KS(0) KS(1) KS(2) KS(3) KS(4) KS(5) KS(6) KS(7)
                     :
                     : "D"(&R), [flag] "m"(term_flag)
                     : GPR_CLOBBERS, "memory", "cc", "st", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
                       "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
                       "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21",
                       "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29",
                       "xmm30", "xmm31", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7");
}

#define YL(n) "vmovdqu " #n "*64(%%rdi), %%ymm" #n "\n\t"
#define YS(n) "vmovdqu %%ymm" #n ", 2048+" #n "*64(%%rdi)\n\t"
#define XL(n) "movdqu " #n "*64(%%rdi), %%xmm" #n "\n\t"
#define XS(n) "movdqu %%xmm" #n ", 2048+" #n "*64(%%rdi)\n\t"
#define V16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define XMM16_CLOBBERS                                                                            \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",      \
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

__attribute__((target("avx"))) static void loop_avx(void)
{
    __asm__ volatile(GPR_LOAD V16(YL) LOOP("vpaddq %%ymm14, %%ymm15, %%ymm15\n\t") GPR_STORE V16(YS)
                     :
                     : "D"(&R), [flag] "m"(term_flag)
                     : GPR_CLOBBERS, "memory", "cc", "st", XMM16_CLOBBERS);
}

static void loop_sse(void)
{
    __asm__ volatile(GPR_LOAD V16(XL) LOOP("paddq %%xmm14, %%xmm15\n\t") GPR_STORE V16(XS)
                     :
                     : "D"(&R), [flag] "m"(term_flag)
                     : GPR_CLOBBERS, "memory", "cc", "st", XMM16_CLOBBERS);
}

static __thread uint64_t tls_word = 0x0123456789abcdefull;
static __thread uint8_t tls_block[512];

int main(void)
{
    int nvec, vbytes, masks;
    void (*loop)(void);
    unsigned long fs0, gs0, fs1, gs1;
    unsigned mxcsr0;
    unsigned short cw0, cw1;
    long double x87val = 3.14159265358979323846264338327950288L / 7;

    common_init();
    __builtin_cpu_init();
    /* BLCR_REGS_VECTOR=avx or sse uses a narrower loop than the CPU allows. */
    const char *force = getenv("BLCR_REGS_VECTOR") ? getenv("BLCR_REGS_VECTOR") : "";
    if (__builtin_cpu_supports("avx512f") && !*force) {
        loop = loop_avx512, nvec = 32, vbytes = 64, masks = 1;
    } else if (__builtin_cpu_supports("avx") && strcmp(force, "sse") != 0) {
        loop = loop_avx, nvec = 16, vbytes = 32, masks = 0;
    } else {
        loop = loop_sse, nvec = 16, vbytes = 16, masks = 0;
    }
    for (int v = 0; v < nvec; v++)
        fill_pattern(R.vin[v], vbytes, 100 + v);
    for (int g = 0; g < NGPR; g++)
        fill_pattern(&R.gin[g], 8, 200 + g);
    for (int k = 0; k < 8; k++)
        R.kin[k] = 0x1111u * (k + 1) & 0xffff;
    memcpy(R.x87in, &x87val, 10);

    /* Non-default rounding (x87 and SSE) and flush-to-zero / denormals-are-zero. */
    fesetround(FE_UPWARD);
    _mm_setcsr(_mm_getcsr() | 0x8040);
    mxcsr0 = _mm_getcsr() & ~0x3fu;
    __asm__ volatile("fnstcw %0" : "=m"(cw0));

    fill_pattern(tls_block, sizeof tls_block, 7);
    tls_word ^= (uintptr_t)&tls_word;
    syscall(SYS_arch_prctl, ARCH_GET_FS, &fs0);
    syscall(SYS_arch_prctl, ARCH_GET_GS, &gs0);
    const void *tls_addr = &tls_word;

    if (sabotage())
        fesetround(FE_DOWNWARD);
    ready();
    loop();

    for (int v = 0; v < nvec; v++) {
        int last = v == nvec - 1;
        uint8_t want[64];
        memcpy(want, R.vin[v], vbytes);
        if (last) { /* += the previous register, count times, per 64-bit lane */
            for (int lane = 0; lane < vbytes / 8; lane++) {
                uint64_t a, b;
                memcpy(&a, want + 8 * lane, 8);
                memcpy(&b, R.vin[v - 1] + 8 * lane, 8);
                a += b * R.count;
                memcpy(want + 8 * lane, &a, 8);
            }
        }
        CHECK(memcmp(want, R.vout[v], vbytes) == 0, "vector register %d (%d bytes) changed", v,
              vbytes);
    }
    for (int g = 0; g < NGPR; g++) {
        uint64_t want = R.gin[g] + (g == NGPR - 1 ? R.gin[g - 1] * R.count : 0);
        CHECK(R.gout[g] == want, "general register #%d: %#lx, expected %#lx", g,
              (unsigned long)R.gout[g], (unsigned long)want);
    }
    for (int k = 0; masks && k < 8; k++)
        CHECK((R.kout[k] & 0xffff) == R.kin[k], "mask register k%d: %#lx, expected %#lx", k,
              (unsigned long)(R.kout[k] & 0xffff), (unsigned long)R.kin[k]);
    CHECK(memcmp(R.x87in, R.x87out, 10) == 0, "x87 stack value changed");
    CHECK(R.count > 0, "the loop did not run");
    CHECK((_mm_getcsr() & ~0x3fu) == mxcsr0, "MXCSR %#x, expected %#x", _mm_getcsr() & ~0x3fu,
          mxcsr0);
    __asm__ volatile("fnstcw %0" : "=m"(cw1));
    CHECK(cw1 == cw0, "x87 control word %#x, expected %#x", cw1, cw0);
    CHECK(fegetround() == FE_UPWARD, "rounding mode changed");

    syscall(SYS_arch_prctl, ARCH_GET_FS, &fs1);
    syscall(SYS_arch_prctl, ARCH_GET_GS, &gs1);
    CHECK(fs1 == fs0, "fs base %#lx, expected %#lx", fs1, fs0);
    CHECK(gs1 == gs0, "gs base %#lx, expected %#lx", gs1, gs0);
    CHECK((const void *)&tls_word == tls_addr, "__thread variable moved");
    CHECK((tls_word ^ (uintptr_t)&tls_word) == 0x0123456789abcdefull, "__thread word changed");
    CHECK(check_pattern(tls_block, sizeof tls_block, 7) < 0, "__thread block changed");
    fprintf(stderr, "regs: %d vector registers of %d bytes, %lu iterations\n", nvec, vbytes,
            (unsigned long)R.count);
    return finish();
}
