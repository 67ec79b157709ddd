/* A TCP socket, which a checkpoint must refuse: fd 7 listens on 127.0.0.1 (a free port). The
 * refused checkpoint must leave the program running and healthy: after SIGTERM the socket still
 * listens on the same port and accepts a connection that carries data. */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static unsigned short port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    return getsockname(fd, (struct sockaddr *)&a, &l) == 0 ? ntohs(a.sin_port) : 0;
}

int main(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    common_init();
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || dup2(s, 7) != 7 || bind(7, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(7, 4) != 0)
        DIE("listen");
    close(s);
    unsigned short port = port_of(7);

    if (sabotage())
        close(7);
    ready();
    wait_term();

    CHECK(port_of(7) == port, "fd 7 is not bound to port %u any more", port);
    a.sin_port = htons(port);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0, "cannot connect to port %u", port);
    int acc = accept(7, NULL, NULL);
    char buf[8] = "";
    CHECK(acc >= 0 && write(c, "ping", 4) == 4 && read(acc, buf, sizeof buf) == 4 &&
              memcmp(buf, "ping", 4) == 0,
          "the accepted connection does not carry data");
    return finish();
}
