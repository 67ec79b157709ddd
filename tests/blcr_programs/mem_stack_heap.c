/* Stack and heap:
 *   stack - 1500 nested calls, each with a 2 KiB local array holding its own pattern (3 MiB of
 *           stack); the deepest call waits for SIGTERM, then every level checks its array as
 *           the recursion unwinds;
 *   malloc - 2000 small blocks of varied sizes and one 32 MiB block (mmap'ed by malloc), each
 *           with a pattern; after the restart all are checked, freed and malloc works again;
 *   sbrk  - 1 MiB obtained with sbrk and filled; after the restart sbrk(0) is where it was and
 *           sbrk can grow the heap further (the new memory is usable). */
#include "common.h"

#define DEPTH 1500
#define NBLOCKS 2000

static void *blocks[NBLOCKS];
static size_t sizes[NBLOCKS];
static uint8_t *big;
static uint8_t *brk_area;
static void *brk_end;
#define BIG (32ul << 20)
#define BRK (1ul << 20)
#define MORE (256ul << 10)

static void check_heap(void)
{
    void *now = sbrk(0); /* before anything may move the break */
    CHECK(now == brk_end, "sbrk(0) is %p, expected %p", now, brk_end);
    CHECK(check_pattern(brk_area, BRK, 77) < 0, "memory obtained with sbrk changed");
    uint8_t *more = sbrk(MORE);
    CHECK(more == brk_end, "sbrk(%lu) returned %p, expected %p", MORE, (void *)more, brk_end);
    if (more != (void *)-1) {
        fill_pattern(more, MORE, 78);
        CHECK(check_pattern(more, MORE, 78) < 0, "memory from sbrk after the restart unusable");
        CHECK(sbrk(0) == (uint8_t *)brk_end + MORE, "sbrk(0) did not grow");
    }
    for (int i = 0; i < NBLOCKS; i++)
        CHECK(check_pattern(blocks[i], sizes[i], 1000 + i) < 0, "malloc block %d (%zu bytes) changed",
              i, sizes[i]);
    CHECK(check_pattern(big, BIG, 9) < 0, "the 32 MiB malloc block changed");
    for (int i = 0; i < NBLOCKS; i += 2)
        free(blocks[i]);
    free(big);
    void *again = malloc(BIG);
    CHECK(again != NULL, "malloc after the restart failed");
    if (again)
        memset(again, 1, BIG);
    for (int i = 0; i < NBLOCKS; i += 2) {
        blocks[i] = malloc(sizes[i]);
        CHECK(blocks[i] != NULL, "malloc after free failed");
    }
}

static int recurse(int depth)
{
    uint8_t frame[2048];
    fill_pattern(frame, sizeof frame, depth);
    int bad = 0;
    if (depth == DEPTH) {
        ready();
        wait_term();
        check_heap();
    } else {
        bad = recurse(depth + 1);
    }
    if (check_pattern(frame, sizeof frame, depth) >= 0) {
        if (!bad)
            FAIL("stack frame at depth %d changed", depth);
        bad = 1;
    }
    __asm__ volatile("" : : "r"(frame) : "memory"); /* keep the array on the stack */
    return bad;
}

int main(void)
{
    common_init();
    for (int i = 0; i < NBLOCKS; i++) {
        sizes[i] = 1 + (size_t)(i * 7919) % 3000;
        blocks[i] = malloc(sizes[i]);
        if (!blocks[i])
            DIE("malloc");
        fill_pattern(blocks[i], sizes[i], 1000 + i);
    }
    big = malloc(BIG);
    if (!big)
        DIE("malloc");
    fill_pattern(big, BIG, 9);
    brk_area = sbrk(BRK);
    if (brk_area == (void *)-1)
        DIE("sbrk");
    fill_pattern(brk_area, BRK, 77);
    brk_end = sbrk(0);
    if (sabotage())
        ((uint8_t *)blocks[17])[0] ^= 1;
    recurse(1);
    return finish();
}
