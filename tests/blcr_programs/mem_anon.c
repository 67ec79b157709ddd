/* Private anonymous memory: a 64 MiB region with a pattern in every other MiB (the others never
 * touched, so they must still read as zeros), a 1 GiB MAP_NORESERVE region with a few pages
 * written far apart, and a page the main loop keeps updating until SIGTERM. */
#include "common.h"

#include <sys/mman.h>

#define MIB (1ul << 20)
#define DENSE (64 * MIB)
#define SPARSE (1024 * MIB)

static const size_t sparse_at[] = {0, 4096, 300 * MIB + 12345, 777 * MIB, SPARSE - 8};

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

int main(void)
{
    common_init();
    uint8_t *dense = mmap(NULL, DENSE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *sparse = mmap(NULL, SPARSE, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    uint64_t *live = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (dense == MAP_FAILED || sparse == MAP_FAILED || live == MAP_FAILED)
        DIE("mmap");
    for (size_t m = 0; m < DENSE / MIB; m += 2)
        fill_pattern(dense + m * MIB, MIB, m);
    for (size_t i = 0; i < sizeof sparse_at / sizeof *sparse_at; i++)
        memcpy(sparse + sparse_at[i], "sparse!", 8 - (sparse_at[i] == SPARSE - 8));

    if (sabotage())
        dense[5 * MIB / 2] = 1;
    ready();
    uint64_t iterations = 0;
    while (!term_flag) { /* keep writing memory until SIGTERM */
        live[iterations % 512] += 1;
        iterations++;
    }

    for (size_t m = 0; m < DENSE / MIB; m++) {
        if (m % 2 == 0) {
            long bad = check_pattern(dense + m * MIB, MIB, m);
            CHECK(bad < 0, "dense region: MiB %zu differs at byte %ld", m, bad);
        } else {
            CHECK(all_zero(dense + m * MIB, MIB), "dense region: untouched MiB %zu is not zero", m);
        }
    }
    size_t prev = 0;
    for (size_t i = 0; i < sizeof sparse_at / sizeof *sparse_at; i++) {
        size_t at = sparse_at[i], len = 8 - (at == SPARSE - 8);
        CHECK(memcmp(sparse + at, "sparse!", len) == 0, "sparse region: data at %zu lost", at);
        CHECK(at < prev || all_zero(sparse + prev, at - prev),
              "sparse region: not zero between %zu and %zu", prev, at);
        prev = at + len;
    }
    uint64_t sum = 0;
    for (int i = 0; i < 512; i++)
        sum += live[i];
    CHECK(sum == iterations, "live page: %lu updates recorded, %lu made", (unsigned long)sum,
          (unsigned long)iterations);
    char perms[5];
    CHECK(maps_lookup(dense, perms, NULL, 0) && strcmp(perms, "rw-p") == 0,
          "dense region is not a rw-p mapping any more");
    return finish();
}
