/* Unix socket pairs with queued data, both ends here:
 *   stream    (fds 50/51): 5000 bytes queued 50 -> 51 and 300 bytes 51 -> 50, send buffer of 51
 *             set to 64 KiB;
 *   datagram  (fds 52/53): three datagrams of 10, 200 and 3000 bytes queued 52 -> 53;
 *   seqpacket (fds 54/55): two records of 7 and 900 bytes queued 55 -> 54.
 * After the restart every queue holds exactly its data, datagram and record boundaries are
 * kept, socket types and the buffer size are unchanged, and the pairs carry new data. */
#include "common.h"

#include <sys/socket.h>

static void pair(int type, int a, int b)
{
    int sv[2];
    if (socketpair(AF_UNIX, type, 0, sv) != 0 || dup2(sv[0], a) != a || dup2(sv[1], b) != b)
        DIE("socketpair");
    close(sv[0]);
    close(sv[1]);
}

static int sockint(int fd, int opt)
{
    int v = -1;
    socklen_t l = sizeof v;
    getsockopt(fd, SOL_SOCKET, opt, &v, &l);
    return v;
}

/* Receive exactly the bytes of one message of `size` from a stream (in any number of pieces),
 * then nothing more. */
static void expect_stream(int fd, int size, uint64_t seed, const char *what)
{
    static uint8_t buf[8192];
    ssize_t got = 0, r;
    while ((r = recv(fd, buf + got, sizeof buf - got, MSG_DONTWAIT)) > 0)
        got += r;
    CHECK(got == size, "%s: %zd bytes queued, expected %d", what, got, size);
    CHECK(got != size || check_pattern(buf, size, seed) < 0, "%s: queued bytes differ", what);
}

/* Receive exactly the messages of `sizes` (patterns seeded from `seed`), then nothing more. */
static void expect_messages(int fd, const int *sizes, int n, uint64_t seed, const char *what)
{
    static uint8_t buf[8192];
    for (int i = 0; i < n; i++) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        CHECK(r == sizes[i], "%s: message %d has %zd bytes, expected %d", what, i, r, sizes[i]);
        CHECK(r != sizes[i] || check_pattern(buf, r, seed + i) < 0, "%s: message %d differs",
              what, i);
    }
    CHECK(recv(fd, buf, sizeof buf, MSG_DONTWAIT) == -1 && errno == EAGAIN,
          "%s: more data than was queued", what);
}

static void send_messages(int fd, const int *sizes, int n, uint64_t seed)
{
    static uint8_t buf[8192];
    for (int i = 0; i < n; i++) {
        fill_pattern(buf, sizes[i], seed + i);
        if (send(fd, buf, sizes[i], 0) != sizes[i])
            DIE("send");
    }
}

int main(void)
{
    static const int stream_ab[] = {5000}, stream_ba[] = {300}, dgrams[] = {10, 200, 3000},
                     records[] = {7, 900};
    common_init();
    pair(SOCK_STREAM, 50, 51);
    pair(SOCK_DGRAM, 52, 53);
    pair(SOCK_SEQPACKET, 54, 55);
    int sndbuf = 64 * 1024;
    if (setsockopt(51, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) != 0)
        DIE("setsockopt");
    sndbuf = sockint(51, SO_SNDBUF);
    send_messages(50, stream_ab, 1, 100);
    send_messages(51, stream_ba, 1, 200);
    send_messages(52, dgrams, 3, 300);
    send_messages(55, records, 2, 400);

    if (sabotage())
        send_messages(52, dgrams, 1, 999);
    ready();
    wait_term();

    CHECK(sockint(50, SO_TYPE) == SOCK_STREAM && sockint(51, SO_TYPE) == SOCK_STREAM,
          "fds 50/51 are not stream sockets");
    CHECK(sockint(52, SO_TYPE) == SOCK_DGRAM && sockint(53, SO_TYPE) == SOCK_DGRAM,
          "fds 52/53 are not datagram sockets");
    CHECK(sockint(54, SO_TYPE) == SOCK_SEQPACKET && sockint(55, SO_TYPE) == SOCK_SEQPACKET,
          "fds 54/55 are not seqpacket sockets");
    CHECK(sockint(51, SO_SNDBUF) == sndbuf, "SO_SNDBUF of fd 51 is %d, expected %d",
          sockint(51, SO_SNDBUF), sndbuf);
    expect_stream(51, stream_ab[0], 100, "stream 50->51");
    expect_stream(50, stream_ba[0], 200, "stream 51->50");
    expect_messages(53, dgrams, 3, 300, "datagrams 52->53");
    expect_messages(54, records, 2, 400, "seqpacket 55->54");

    static const int one[] = {33};
    send_messages(51, one, 1, 500);
    expect_stream(50, one[0], 500, "new data 51->50");
    send_messages(53, one, 1, 600);
    expect_messages(52, one, 1, 600, "new datagram 53->52");
    send_messages(54, one, 1, 700);
    expect_messages(55, one, 1, 700, "new record 54->55");
    return finish();
}
