/* Unix sockets that are not socket pairs (argv[1] is a work directory):
 *   50 stream, neither bound nor connected;  51 datagram, neither bound nor connected;
 *   52 stream bound to WORK/s-stream, not listening;
 *   53 datagram bound to WORK/d-a;  54 datagram bound to an abstract name;
 *   55 datagram, unbound, connected to 53;  56 datagram bound to WORK/d-c, connected to 54;
 *   57 stream listening at WORK/listening.
 * Queued: at 53 "one" from 55 (no sender name) then "two" from 54; at 54 "three" from 53 and
 * "four" from 56. After the restart every socket has its type, name and peer, every queue
 * holds its datagrams with their senders' names, and all of them work: 50 connects to a new
 * listener, 51 binds, 55 and 56 send to their peers, 53 sends to 54 by name, 57 accepts. */
#include "common.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static struct sockaddr_un a_path, c_path, s_path, l_path, abstr;
static socklen_t abstr_len;

static void at(int fd, int want)
{
    if (fd < 0 || dup2(fd, want) != want)
        DIE("descriptor");
    close(fd);
}

static socklen_t path_addr(struct sockaddr_un *sa, const char *dir, const char *name)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    snprintf(sa->sun_path, sizeof sa->sun_path, "%s/%s", dir, name);
    return sizeof *sa;
}

static void bind_to(int fd, const struct sockaddr_un *sa, socklen_t len)
{
    if (bind(fd, (const struct sockaddr *)sa, len) != 0)
        DIE("bind");
}

static int sockint(int fd, int opt)
{
    int v = -1;
    socklen_t l = sizeof v;
    getsockopt(fd, SOL_SOCKET, opt, &v, &l);
    return v;
}

/* 1 when the address (name or peer name) of fd is `sa` (NULL: unnamed). */
static int named(int fd, int peer, const struct sockaddr_un *sa, socklen_t len)
{
    struct sockaddr_un got;
    socklen_t gl = sizeof got;
    memset(&got, 0, sizeof got);
    int r = peer ? getpeername(fd, (struct sockaddr *)&got, &gl)
                 : getsockname(fd, (struct sockaddr *)&got, &gl);
    if (r != 0)
        return 0;
    if (sa == NULL)
        return gl == offsetof(struct sockaddr_un, sun_path);
    if (sa->sun_path[0] == 0)
        return gl == len && memcmp(got.sun_path, sa->sun_path, len - 2) == 0;
    return strcmp(got.sun_path, sa->sun_path) == 0;
}

static void expect_dgram(int fd, const char *text, const struct sockaddr_un *from, socklen_t fl)
{
    char buf[64];
    struct sockaddr_un got;
    socklen_t gl = sizeof got;
    memset(&got, 0, sizeof got);
    ssize_t r = recvfrom(fd, buf, sizeof buf - 1, MSG_DONTWAIT, (struct sockaddr *)&got, &gl);
    buf[r > 0 ? r : 0] = 0;
    CHECK(r == (ssize_t)strlen(text) && !strcmp(buf, text), "fd %d: received \"%s\", expected "
          "\"%s\"", fd, r < 0 ? strerror(errno) : buf, text);
    if (from == NULL)
        CHECK(gl <= offsetof(struct sockaddr_un, sun_path), "fd %d: \"%s\" comes from a named "
              "socket", fd, text);
    else if (from->sun_path[0])
        CHECK(!strcmp(got.sun_path, from->sun_path), "fd %d: \"%s\" comes from \"%s\", expected "
              "\"%s\"", fd, text, got.sun_path, from->sun_path);
    else
        CHECK(gl == fl && !memcmp(got.sun_path, from->sun_path, fl - 2), "fd %d: \"%s\" does "
              "not come from the abstract name", fd, text);
}

static void send_to(int fd, const char *text, const struct sockaddr_un *to, socklen_t tl)
{
    if (sendto(fd, text, strlen(text), 0, (const struct sockaddr *)to, tl) !=
        (ssize_t)strlen(text))
        DIE("sendto");
}

int main(int argc, char **argv)
{
    if (argc < 2)
        DIE("usage: fd_unix WORKDIR");
    common_init();
    socklen_t al = path_addr(&a_path, argv[1], "d-a"), cl = path_addr(&c_path, argv[1], "d-c");
    socklen_t sl = path_addr(&s_path, argv[1], "s-stream");
    socklen_t ll = path_addr(&l_path, argv[1], "listening");
    memset(&abstr, 0, sizeof abstr);
    abstr.sun_family = AF_UNIX;
    abstr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                            snprintf(abstr.sun_path + 1, sizeof abstr.sun_path - 1,
                                     "pycrs-fd-unix-%d", (int)getpid()));

    at(socket(AF_UNIX, SOCK_STREAM, 0), 50);
    at(socket(AF_UNIX, SOCK_DGRAM, 0), 51);
    at(socket(AF_UNIX, SOCK_STREAM, 0), 52);
    bind_to(52, &s_path, sl);
    at(socket(AF_UNIX, SOCK_DGRAM, 0), 53);
    bind_to(53, &a_path, al);
    at(socket(AF_UNIX, SOCK_DGRAM, 0), 54);
    bind_to(54, &abstr, abstr_len);
    at(socket(AF_UNIX, SOCK_DGRAM, 0), 55);
    if (connect(55, (struct sockaddr *)&a_path, al) != 0)
        DIE("connect 55");
    at(socket(AF_UNIX, SOCK_DGRAM, 0), 56);
    bind_to(56, &c_path, cl);
    if (connect(56, (struct sockaddr *)&abstr, abstr_len) != 0)
        DIE("connect 56");
    at(socket(AF_UNIX, SOCK_STREAM, 0), 57);
    bind_to(57, &l_path, ll);
    if (listen(57, 4) != 0)
        DIE("listen");
    if (send(55, "one", 3, 0) != 3)
        DIE("send");
    send_to(54, "two", &a_path, al);
    send_to(53, "three", &abstr, abstr_len);
    if (send(56, "four", 4, 0) != 4)
        DIE("send");

    if (sabotage())
        send_to(51, "extra", &abstr, abstr_len);
    ready();
    wait_term();

    static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_STREAM, SOCK_DGRAM, SOCK_DGRAM,
                                SOCK_DGRAM, SOCK_DGRAM};
    for (int fd = 50; fd <= 56; fd++)
        CHECK(sockint(fd, SO_DOMAIN) == AF_UNIX && sockint(fd, SO_TYPE) == types[fd - 50],
              "fd %d: domain %d type %d", fd, sockint(fd, SO_DOMAIN), sockint(fd, SO_TYPE));
    CHECK(named(50, 0, NULL, 0) && named(51, 0, NULL, 0) && named(55, 0, NULL, 0),
          "an unbound socket has a name");
    CHECK(!named(50, 1, NULL, 0) && !named(51, 1, NULL, 0) && !named(52, 1, NULL, 0) &&
              !named(53, 1, NULL, 0) && !named(54, 1, NULL, 0), "an unconnected socket has a peer");
    CHECK(named(52, 0, &s_path, sl), "fd 52 lost its name");
    CHECK(named(53, 0, &a_path, al), "fd 53 lost its name");
    CHECK(named(54, 0, &abstr, abstr_len), "fd 54 lost its abstract name");
    CHECK(named(56, 0, &c_path, cl), "fd 56 lost its name");
    CHECK(named(55, 1, &a_path, al), "fd 55 is not connected to fd 53's name");
    CHECK(named(56, 1, &abstr, abstr_len), "fd 56 is not connected to fd 54's name");
    CHECK(sockint(52, SO_ACCEPTCONN) == 0, "fd 52 listens");
    CHECK(sockint(57, SO_ACCEPTCONN) == 1 && named(57, 0, &l_path, ll), "fd 57 does not listen "
          "at its name");

    expect_dgram(53, "one", NULL, 0);
    expect_dgram(53, "two", &abstr, abstr_len);
    expect_dgram(54, "three", &a_path, al);
    expect_dgram(54, "four", &c_path, cl);
    char c;
    CHECK(recv(53, &c, 1, MSG_DONTWAIT) < 0 && recv(54, &c, 1, MSG_DONTWAIT) < 0 &&
              recv(51, &c, 1, MSG_DONTWAIT) < 0, "more datagrams than were queued");

    CHECK(send(55, "five", 4, 0) == 4, "fd 55 cannot send to its peer: %s", strerror(errno));
    expect_dgram(53, "five", NULL, 0);
    CHECK(send(56, "six", 3, 0) == 3, "fd 56 cannot send to its peer: %s", strerror(errno));
    expect_dgram(54, "six", &c_path, cl);
    send_to(53, "seven", &abstr, abstr_len);
    expect_dgram(54, "seven", &a_path, al);

    struct sockaddr_un b_path;
    socklen_t bl = path_addr(&b_path, argv[1], "b");
    CHECK(connect(50, (struct sockaddr *)&l_path, ll) == 0, "fd 50 cannot connect to fd 57: %s",
          strerror(errno));
    int conn = accept(57, NULL, NULL);
    CHECK(conn >= 0 && send(50, "x", 1, 0) == 1 && recv(conn, &c, 1, 0) == 1 && c == 'x',
          "fd 57 does not accept a connection that carries data");
    CHECK(bind(51, (struct sockaddr *)&b_path, bl) == 0, "fd 51 cannot bind: %s", strerror(errno));
    return finish();
}
