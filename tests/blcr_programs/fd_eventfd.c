/* eventfd counters beyond 32 bits:
 *   60 eventfd (EFD_NONBLOCK) whose count is 0xfffffffffffffff0;
 *   61 EFD_SEMAPHORE eventfd (EFD_NONBLOCK) whose count is 2^32 + 3;
 *   62 blocking eventfd whose count is 2^40.
 * After the restart: 60 takes exactly 0x0e more and then refuses one more (EAGAIN), and reads
 * 0xfffffffffffffffe; 61 still counts as a semaphore (each read gives 1, the count drops by one);
 * 62 reads 2^40. */
#include "common.h"

#include <sys/eventfd.h>

static void at(int fd, int want)
{
    if (fd < 0 || dup2(fd, want) != want)
        DIE("descriptor");
    close(fd);
}

static void add(int fd, uint64_t v)
{
    if (write(fd, &v, 8) != 8)
        DIE("eventfd write");
}

/* The eventfd-count of fd's fdinfo, or -1. */
static long long fdinfo_count(int fd)
{
    char path[64], line[256];
    long long n = -1;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "eventfd-count:", 14) == 0)
            n = strtoll(line + 14, NULL, 16);
    fclose(f);
    return n;
}

int main(void)
{
    uint64_t v;
    common_init();
    at(eventfd(0, EFD_NONBLOCK), 60);
    add(60, 0xfffffffffffffff0ull);
    at(eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK), 61);
    add(61, (1ull << 32) + 3);
    at(eventfd(0, 0), 62);
    add(62, 1ull << 40);

    if (sabotage())
        add(62, 1);
    ready();
    wait_term();

    v = 0x0e;
    CHECK(write(60, &v, 8) == 8, "eventfd 60 refuses 0x0e more: %s", strerror(errno));
    v = 1;
    CHECK(write(60, &v, 8) == -1 && errno == EAGAIN, "eventfd 60 takes more than its maximum");
    v = 0;
    CHECK(read(60, &v, 8) == 8 && v == 0xfffffffffffffffeull, "eventfd 60 reads %#llx",
          (unsigned long long)v);
    v = 0;
    CHECK(read(61, &v, 8) == 8 && v == 1, "semaphore eventfd 61 reads %llu, expected 1",
          (unsigned long long)v);
    CHECK(fdinfo_count(61) == (1ll << 32) + 2, "semaphore eventfd 61 counts %#llx, expected "
          "%#llx", fdinfo_count(61), (1ll << 32) + 2);
    v = 0;
    CHECK(read(62, &v, 8) == 8 && v == 1ull << 40, "eventfd 62 reads %#llx, expected 2^40",
          (unsigned long long)v);
    return finish();
}
