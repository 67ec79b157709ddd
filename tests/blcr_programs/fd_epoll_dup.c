/* An epoll set whose targets are dups and reused numbers (epoll keys a target by open file and
 * descriptor number, so all four are distinct):
 *   70 epoll; pipe 71/72 with 73 a dup of 71: watched as 71 (data 1) and as 73 (data 2);
 *   pipe 74/75: its read end dup'ed to 99 and watched as 99 (data 3); then pipe 76/77: its read
 *   end dup'ed over 99 and watched as 99 (data 4); the first registration of 99 stays, for the
 *   file 74 still holds.
 * Every pipe holds a byte. After the restart epoll 70 reports exactly 1, 2, 3, 4; drained, the
 * pipe 74/75 is no longer reported (data 3 is its file's), and 99 can be removed once (data 4). */
#include "common.h"

#include <sys/epoll.h>

static void at(int fd, int want)
{
    if (fd < 0 || dup2(fd, want) != want)
        DIE("descriptor");
    if (fd != want)
        close(fd);
}

static void watch(int fd, uint64_t data)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = data};
    if (epoll_ctl(70, EPOLL_CTL_ADD, fd, &ev) != 0)
        DIE("epoll_ctl");
}

static void pipe_at(int r, int w)
{
    int p[2];
    if (pipe(p) != 0)
        DIE("pipe");
    at(p[0], r);
    at(p[1], w);
    if (write(w, "x", 1) != 1)
        DIE("write");
}

/* Bit d of the result: data d was reported ready. */
static unsigned ready_set(void)
{
    struct epoll_event evs[8];
    unsigned set = 0;
    int n = epoll_wait(70, evs, 8, 0);
    for (int i = 0; i < n; i++) {
        uint64_t d = evs[i].data.u64;
        CHECK(d >= 1 && d <= 4 && !(set & 1u << d), "epoll reported data %llu",
              (unsigned long long)d);
        set |= 1u << (d & 31);
    }
    return set;
}

int main(void)
{
    char c;
    common_init();
    at(epoll_create1(0), 70);
    pipe_at(71, 72);
    at(dup(71), 73);
    watch(71, 1);
    watch(73, 2);
    pipe_at(74, 75);
    at(dup(74), 99);
    watch(99, 3);
    pipe_at(76, 77);
    at(dup(76), 99);
    watch(99, 4);

    if (sabotage() && epoll_ctl(70, EPOLL_CTL_DEL, 73, NULL) != 0)
        DIE("epoll_ctl DEL");
    ready();
    wait_term();

    unsigned set = ready_set();
    CHECK(set == 0x1e, "epoll reports the data set %#x, expected 0x1e", set);
    CHECK(read(74, &c, 1) == 1, "pipe 74 lost its byte");
    set = ready_set();
    CHECK(set == 0x16, "with pipe 74 drained, epoll reports %#x, expected 0x16", set);
    CHECK(epoll_ctl(70, EPOLL_CTL_DEL, 99, NULL) == 0, "descriptor 99 is not watched: %s",
          strerror(errno));
    CHECK(epoll_ctl(70, EPOLL_CTL_DEL, 99, NULL) == -1 && errno == ENOENT,
          "descriptor 99 is watched twice under its file");
    set = ready_set();
    CHECK(set == 0x06, "after removing 99, epoll reports %#x, expected 0x06", set);
    return finish();
}
