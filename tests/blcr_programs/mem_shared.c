/* Shared memory: a shared anonymous mapping and a memfd, each mapped at two addresses (the
 * shared anonymous one aliased with mremap(old_size 0)). After the restart the two mappings of
 * each object must still be one memory: a write through one is seen through the other, and
 * the memfd's pages are the file's (pread through the descriptor). */
#include "common.h"

#include <sys/mman.h>

#define SIZE (4ul << 20)

int main(void)
{
    common_init();
    uint8_t *anon = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED)
        DIE("mmap shared anonymous");
    uint8_t *anon2 = mremap(anon, 0, SIZE, MREMAP_MAYMOVE);
    if (anon2 == MAP_FAILED)
        DIE("mremap alias");
    int mfd = memfd_create("blcr-test", 0);
    if (mfd < 0 || ftruncate(mfd, SIZE) != 0)
        DIE("memfd");
    uint8_t *mem = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    uint8_t *mem2 = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (mem == MAP_FAILED || mem2 == MAP_FAILED)
        DIE("mmap memfd");
    fill_pattern(anon, SIZE, 1);
    fill_pattern(mem, SIZE, 2);
    char perms[5], path[256];

    if (sabotage())
        anon2[4096] ^= 1;
    ready();
    wait_term();

    CHECK(check_pattern(anon, SIZE, 1) < 0, "shared anonymous mapping: content changed");
    CHECK(check_pattern(anon2, SIZE, 1) < 0, "shared anonymous alias: content changed");
    CHECK(maps_lookup(anon, perms, NULL, 0) && strcmp(perms, "rw-s") == 0,
          "shared anonymous mapping is not rw-s");
    anon[100] ^= 0xff;
    CHECK(anon2[100] == anon[100], "shared anonymous mapping and its alias are no longer shared");

    CHECK(check_pattern(mem, SIZE, 2) < 0, "memfd mapping: content changed");
    CHECK(check_pattern(mem2, SIZE, 2) < 0, "memfd second mapping: content changed");
    CHECK(maps_lookup(mem, perms, path, sizeof path) && strcmp(perms, "rw-s") == 0 &&
              strstr(path, "memfd:blcr-test") != NULL,
          "memfd mapping is not a rw-s mapping of memfd:blcr-test");
    mem[SIZE - 1] ^= 0xff;
    CHECK(mem2[SIZE - 1] == mem[SIZE - 1], "the two memfd mappings are no longer shared");
    uint8_t b;
    CHECK(pread(mfd, &b, 1, SIZE - 1) == 1 && b == mem[SIZE - 1],
          "a write through the memfd mapping does not reach the memfd");
    CHECK(lseek(mfd, 0, SEEK_END) == (off_t)SIZE, "memfd size changed");
    return finish();
}
