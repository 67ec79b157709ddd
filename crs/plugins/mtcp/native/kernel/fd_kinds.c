/* mtcp kernel: what each descriptor is, by kind: a regular file (not deleted), a directory, a
 * plain device (null, zero, random...), a terminal, a pipe (whole only when both ends are in
 * the process, its unread content saved without consuming it), a listening Unix socket with a
 * name, a file deleted while open (its content, mode and owner), a memfd (its content and
 * seals, unless sealed against writes, which only a restore from outside can add), an eventfd (its count), an epoll set (its watches, each with a descriptor holding the
 * watched file), or at 0-2 whatever the restarter provides. Anything else is
 * refused with a reason that names what it is. */
#include "kernel.h"

#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static int is_tty_major(unsigned m) { return m == 4 || m == 5 || (m >= 136 && m <= 143); }

static int plain_device(unsigned ma, unsigned mi)
{
    return ma == 1 && (mi == 3 || mi == 5 || mi == 7 || mi == 8 || mi == 9);
}

static int unread_pipe_data(int fd, struct buf *out, int *capacity)
{
    int cap = fcntl(fd, F_GETPIPE_SZ);
    if (cap < 0)
        return mtcp_fail("descriptor %d: pipe size (F_GETPIPE_SZ): %s", fd, errname(errno));
    *capacity = cap;
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return mtcp_fail_errno("a pipe for copying buffered pipe data", errno);
    mtcp_own_add(p[0]);
    mtcp_own_add(p[1]);
    int rc = 0;
    if (fcntl(p[1], F_SETPIPE_SZ, cap) < 0) {
        rc = mtcp_fail("descriptor %d: sizing the copy pipe: %s", fd, errname(errno));
    } else {
        ssize_t t = tee(fd, p[1], (size_t)cap, SPLICE_F_NONBLOCK);
        if (t < 0 && errno != EAGAIN)
            rc = mtcp_fail("descriptor %d: copying buffered pipe data (tee): %s", fd,
                           errname(errno));
        else if (t > 0 && mtcp_buf_reserve(out, (size_t)t) == 0) {
            ssize_t got = read(p[0], out->p, (size_t)t);
            out->len = got > 0 ? (size_t)got : 0;
        }
    }
    close(p[0]);
    close(p[1]);
    mtcp_own_del(p[0]);
    mtcp_own_del(p[1]);
    return rc;
}

/* A socket: a listening Unix socket with a name (kept with its type and address), or at 0-2
 * whatever the restarter provides. */
static int socket_kind(struct fdrec *e, const char *link, struct buf *links)
{
    int fd = e->fd;
    int dom = 0, acc = 0, type = 0;
    socklen_t sl = sizeof dom;
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &sl);
    sl = sizeof acc;
    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &sl);
    sl = sizeof type;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl);
    if (dom == AF_UNIX && acc) {
        struct sockaddr_un sa;
        socklen_t al = sizeof sa;
        if (getsockname(fd, (struct sockaddr *)&sa, &al) < 0)
            return mtcp_fail("descriptor %d: getsockname: %s", fd, errname(errno));
        size_t plen = al > offsetof(struct sockaddr_un, sun_path)
                          ? al - offsetof(struct sockaddr_un, sun_path) : 0;
        if (plen && sa.sun_path[0])
            plen = strnlen(sa.sun_path, plen);
        if (!plen)
            return mtcp_fail("descriptor %d is an unnamed listening socket", fd);
        e->kind = FD_LISTEN;
        e->stype = type;
        e->path = links->len;
        e->pathlen = plen;
        if (mtcp_put(links, sa.sun_path, plen) < 0)
            return -1;
        return 0;
    }
    if (fd <= 2) {
        e->kind = FD_STDIO;
        return 0;
    }
    return mtcp_fail("descriptor %d is a %s socket (%s), which mtcp cannot restore yet", fd,
                     dom == AF_UNIX    ? "Unix"
                     : dom == AF_INET  ? "IPv4"
                     : dom == AF_INET6 ? "IPv6"
                                       : "network",
                     link);
}

/* What an anonymous-inode descriptor is, in words, for a refusal. */
static const char *anon_kind(const char *link)
{
    static const struct { const char *link, *words; } known[] = {
        {"anon_inode:[timerfd]", "a timerfd"},
        {"anon_inode:[signalfd]", "a signalfd"},
        {"anon_inode:inotify", "an inotify instance"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(link, known[i].link))
            return known[i].words;
    return "a special descriptor";
}

/* An eventfd: its count (any 64-bit value) and whether it counts as a semaphore. */
static int eventfd_kind(struct fdrec *e, const char *info)
{
    const char *c = strstr(info, "eventfd-count:"), *sem = strstr(info, "eventfd-semaphore:");
    if (c == NULL)
        return mtcp_fail("descriptor %d is an eventfd whose count /proc does not show", e->fd);
    e->kind = FD_EVENTFD;
    e->ino = strtoull(c + 14, NULL, 16);
    e->stype = sem != NULL && strtol(sem + 18, NULL, 10) == 1;
    return 0;
}

#define KCMP_EPOLL_TFD 7

/* A descriptor of the process (not the kernel's) holding the file epoll set `ep` watches as
 * the toff-th registration of number tfd; -1 if none does. */
static int epoll_holder(int ep, int tfd, int toff)
{
    static int fds[65536 / 4];
    struct { uint32_t efd, tfd, toff; } slot = {(uint32_t)ep, (uint32_t)tfd, (uint32_t)toff};
    if (syscall(SYS_kcmp, mtcp.pid, mtcp.pid, KCMP_EPOLL_TFD, tfd, &slot) == 0)
        return tfd;
    int n = mtcp_list_numbers("/proc/self/fd", fds, (int)(sizeof fds / sizeof fds[0]));
    for (int i = 0; i < n; i++)
        if (!mtcp_is_own(fds[i]) &&
            syscall(SYS_kcmp, mtcp.pid, mtcp.pid, KCMP_EPOLL_TFD, fds[i], &slot) == 0)
            return fds[i];
    return -1;
}

/* An epoll set: its watches as a JSON array of [number, events, data, holder] in links. */
static int epoll_kind(struct fdrec *e, const char *info, struct buf *links)
{
    int seen[256], nseen = 0;
    char item[96];
    e->kind = FD_EPOLL;
    e->path = links->len;
    if (mtcp_puts(links, "[") < 0)
        return -1;
    for (const char *t = strstr(info, "tfd:"); t; t = strstr(t + 4, "tfd:")) {
        int tfd, toff = 0;
        unsigned events;
        unsigned long long data;
        if (sscanf(t, "tfd: %d events: %x data: %llx", &tfd, &events, &data) != 3)
            return mtcp_fail("descriptor %d: an epoll watch /proc does not show whole", e->fd);
        for (int k = 0; k < nseen; k++)
            toff += seen[k] == tfd;
        if (nseen == (int)(sizeof seen / sizeof seen[0]))
            return mtcp_fail("descriptor %d is an epoll set with more than %d watches, which mtcp "
                             "cannot restore yet", e->fd, nseen);
        seen[nseen++] = tfd;
        int holder = epoll_holder(e->fd, tfd, toff);
        if (holder < 0)
            return mtcp_fail("descriptor %d is an epoll set watching, as %d, a file no "
                             "descriptor of the process holds any more", e->fd, tfd);
        snprintf(item, sizeof item, "%s[%d,%u,%llu,%d]", nseen > 1 ? "," : "", tfd, events, data,
                 holder);
        if (mtcp_puts(links, item) < 0)
            return -1;
    }
    if (mtcp_put(links, "]", 2) < 0) /* with its NUL: the record writes it as text */
        return -1;
    e->pathlen = links->len - e->path - 1;
    return 0;
}

int mtcp_fd_kind(struct fdrec *e, const char *link, size_t ll, const char *info,
                 struct buf *links)
{
    int fd = e->fd;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return mtcp_fail("descriptor %d (%s): fstat: %s", fd, link, errname(errno));
    if (!strncmp(link, "pipe:[", 6)) {
        e->kind = FD_PIPE;
        e->ino = st.st_ino;
        return 0;
    }
    if (!strncmp(link, "socket:[", 8))
        return socket_kind(e, link, links);
    if (!strcmp(link, "anon_inode:[eventfd]"))
        return eventfd_kind(e, info);
    if (!strcmp(link, "anon_inode:[eventpoll]"))
        return epoll_kind(e, info, links);
    if (link[0] != '/')
        return mtcp_fail("descriptor %d is %s (%s), which mtcp cannot restore yet", fd,
                         anon_kind(link), link);
    if (!strncmp(link, "/memfd:", 7)) {
        int seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0)
            return mtcp_fail("descriptor %d: the seals of memfd %s: %s", fd, link, errname(errno));
        /* a write seal forbids the restored process's shared writable mappings of it */
        if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
            return mtcp_fail("descriptor %d is a memfd sealed against writes (%s), which mtcp "
                             "cannot restore yet", fd, link);
        e->kind = FD_MEMFD;
        e->ino = st.st_ino;
        e->size = st.st_size;
        e->mode = (unsigned)seals;
        e->path = e->link + 7;
        e->pathlen = ll - 7 - (mtcp_ends_with(link, " (deleted)") ? 10 : 0);
        return 0;
    }
    if (S_ISREG(st.st_mode)) {
        if (ll > 10 && !strcmp(link + ll - 10, " (deleted)") && st.st_nlink == 0) {
            e->kind = FD_DELETED;
            e->ino = st.st_ino;
            e->size = st.st_size;
            e->mode = st.st_mode & 07777;
            e->uid = st.st_uid;
            e->gid = st.st_gid;
            e->pathlen = ll - 10;
            return 0;
        }
        e->kind = FD_FILE;
        e->size = st.st_size;
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        e->kind = FD_DIR;
        return 0;
    }
    if (S_ISCHR(st.st_mode)) {
        unsigned ma = major(st.st_rdev), mi = minor(st.st_rdev);
        if (is_tty_major(ma) && strcmp(link, "/dev/ptmx") && strcmp(link, "/dev/pts/ptmx")) {
            e->kind = fd <= 2 ? FD_STDIO : FD_TERMINAL;
            return 0;
        }
        if (plain_device(ma, mi)) {
            e->kind = FD_DEVICE;
            return 0;
        }
    }
    if (S_ISFIFO(st.st_mode))
        return mtcp_fail("descriptor %d is a FIFO (%s), which mtcp cannot restore yet", fd, link);
    return mtcp_fail("descriptor %d is %s, a device or special file that mtcp cannot restore", fd,
                     link);
}

int mtcp_put_file_data(int dirfd, const char *name, int fd, int64_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    /* a reader of its own: the descriptor may be write-only, and its offset stays */
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return mtcp_fail("descriptor %d: opening the deleted file to save it: %s", fd,
                         errname(errno));
    mtcp_own_add(in);
    int out = mtcp_open_out(dirfd, name), rc = out < 0 ? -1 : 0;
    off_t off = 0;
    while (rc == 0 && off < size) {
        ssize_t n = sendfile(out, in, &off, (size_t)(size - off));
        if (n < 0 && errno != EINTR)
            rc = mtcp_fail("descriptor %d: saving the deleted file's content: %s", fd,
                           errname(errno));
        else if (n == 0)
            rc = mtcp_fail("descriptor %d: the deleted file shrank while it was saved", fd);
    }
    if (out >= 0)
        mtcp_close_out(out);
    mtcp_own_del(in);
    close(in);
    return rc;
}

/* Pipes: whole when both ends are here; at 0-2 a pipe to elsewhere is the restarter's. */
int mtcp_fd_pipes(struct fdrec *r, int m, const struct buf *links)
{
    for (int i = 0; i < m; i++) {
        if (r[i].kind != FD_PIPE)
            continue;
        int modes = 0;
        for (int j = 0; j < m; j++)
            if (r[j].kind == FD_PIPE && r[j].ino == r[i].ino)
                modes |= 1 << (r[j].flags & O_ACCMODE);
        if ((modes & 3) == 3)
            continue;
        if (r[i].fd <= 2) {
            r[i].kind = FD_STDIO;
            continue;
        }
        return mtcp_fail("descriptor %d is a pipe (%s) to another process, which mtcp cannot "
                         "restore yet", r[i].fd, links->p + r[i].link);
    }
    return 0;
}

/* The unread content of a pipe (fd, its read end) and its capacity, in its record. */
int mtcp_put_pipe_data(struct buf *b, int fd, struct buf *tmp)
{
    int cap = 65536;
    tmp->len = 0;
    if (unread_pipe_data(fd, tmp, &cap) < 0)
        return -1;
    if (mtcp_key(b, "data_bytes") < 0 || mtcp_puts(b, "\"") < 0 ||
        mtcp_put_hex(b, tmp->p, tmp->len) < 0 || mtcp_puts(b, "\"") < 0 ||
        mtcp_kv_i64(b, "capacity", cap) < 0)
        return -1;
    return 0;
}
