/* mtcp kernel: the descriptors of the process: listed from /proc/self/fd (less the kernel's own
 * and those the request leaves out), their flags and offsets from fdinfo, dups found with kcmp,
 * each classified (fd_kinds.c), and their records in image.json. */
#include "kernel.h"

#define KCMP_FILE 0

/* Descriptors a request leaves out of the image: the process makes them again itself after a
 * restore (an MPI rank's launcher connection); the restored process runs without them. */
static int is_omitted(const struct request *q, int fd)
{
    for (int i = 0; i < q->n_omit; i++)
        if (q->omit_fds[i] == fd)
            return 1;
    return 0;
}

int mtcp_put_fds(struct buf *b, struct buf *recs, struct buf *links, struct buf *tmp,
                 const struct request *q, int dirfd)
{
    int fds[65536 / 4];
    int n = mtcp_list_numbers("/proc/self/fd", fds, (int)(sizeof fds / sizeof fds[0]));
    if (n < 0)
        return -1;
    recs->len = links->len = 0;
    if (mtcp_buf_reserve(recs, (size_t)n * sizeof(struct fdrec)) < 0)
        return -1;
    struct fdrec *r = (struct fdrec *)recs->p;
    int m = 0;
    char path[PATH_MAX + 32], link[PATH_MAX];
    for (int i = 0; i < n; i++) {
        int fd = fds[i];
        if (mtcp_is_own(fd) || is_omitted(q, fd))
            continue;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t ll = readlink(path, link, sizeof link - 1);
        if (ll < 0) {
            if (errno == ENOENT)
                continue;
            return mtcp_fail("descriptor %d: reading its link: %s", fd, errname(errno));
        }
        link[ll] = 0;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
        if (mtcp_read_file(path, tmp) < 0)
            return -1;
        char *fl = strstr(tmp->p, "flags:"), *po = strstr(tmp->p, "pos:");
        int flags = fl ? (int)strtol(fl + 6, NULL, 8) : fcntl(fd, F_GETFL);
        struct fdrec *e = &r[m];
        memset(e, 0, sizeof *e);
        e->fd = fd;
        e->flags = flags & ~O_CLOEXEC;
        e->cloexec = (flags & O_CLOEXEC) != 0;
        e->pos = po ? strtoll(po + 4, NULL, 10) : 0;
        e->link = links->len;
        e->of = -1;
        if (mtcp_put(links, link, (size_t)ll + 1) < 0)
            return -1;
        /* the same open file as an earlier descriptor: a dup */
        for (int j = 0; j < m; j++)
            if (r[j].kind != FD_DUP && !strcmp(links->p + r[j].link, link) &&
                syscall(SYS_kcmp, mtcp.pid, mtcp.pid, KCMP_FILE, r[j].fd, fd) == 0) {
                e->kind = FD_DUP;
                e->of = r[j].fd;
                break;
            }
        m++;
        if (e->kind == FD_DUP && e->of >= 0)
            continue;
        e->path = e->link;
        e->pathlen = (size_t)ll;
        if (mtcp_fd_kind(e, link, (size_t)ll, tmp->p, links) < 0)
            return -1;
    }
    if (mtcp_fd_pipes(r, m, links) < 0)
        return -1;
    recs->len = (size_t)m * sizeof(struct fdrec); /* a forked writer closes them */
    static const char *names[] = {"dup", "file", "dir", "device", "pipe", "stdio", "terminal",
                                  "unix-listen", "eventfd", "epoll", "deleted", "memfd"};
    uint64_t reader_ino[64];
    int nreaders = 0;
    if (mtcp_key(b, "fds") < 0 || mtcp_puts(b, "[") < 0)
        return -1;
    for (int i = 0; i < m; i++) {
        struct fdrec *e = &r[i];
        if (mtcp_sep(b) < 0 || mtcp_puts(b, "{") < 0 || mtcp_kv_i64(b, "fd", e->fd) < 0 ||
            mtcp_kv_i64(b, "flags", e->flags) < 0 ||
            mtcp_kv_raw(b, "cloexec", e->cloexec ? "true" : "false") < 0 ||
            mtcp_kv_i64(b, "pos", e->pos) < 0 || mtcp_kv_str(b, "kind", names[e->kind]) < 0)
            return -1;
        switch (e->kind) {
        case FD_DUP:
            if (mtcp_kv_i64(b, "of", e->of) < 0)
                return -1;
            break;
        case FD_FILE:
            if (mtcp_kv_i64(b, "size", e->size) < 0)
                return -1;
            /* fall through */
        case FD_DIR:
        case FD_DEVICE:
        case FD_TERMINAL:
        case FD_STDIO:
            if (mtcp_key(b, "path") < 0 || mtcp_put_str(b, links->p + e->path, e->pathlen) < 0)
                return -1;
            break;
        case FD_EVENTFD:
            if (mtcp_kv_u64(b, "count", e->ino) < 0 ||
                mtcp_kv_raw(b, "semaphore", e->stype ? "true" : "false") < 0)
                return -1;
            break;
        case FD_DELETED:
        case FD_MEMFD: {
            char name[32];
            int first = 1;
            for (int k = 0; k < i; k++)
                first &= !(r[k].kind == e->kind && r[k].ino == e->ino);
            snprintf(name, sizeof name, "fd-%d.data", e->fd);
            if (e->kind == FD_MEMFD
                    ? mtcp_kv_u64(b, "ino", e->ino) < 0 || mtcp_kv_i64(b, "size", e->size) < 0 ||
                          mtcp_kv_i64(b, "seals", e->mode) < 0 || mtcp_key(b, "name") < 0 ||
                          mtcp_put_str(b, links->p + e->path, e->pathlen) < 0
                    : mtcp_kv_u64(b, "ino", e->ino) < 0 || mtcp_kv_i64(b, "mode", e->mode) < 0 ||
                          mtcp_key(b, "owner") < 0 || mtcp_puts(b, "[") < 0 ||
                          mtcp_put_i64(b, e->uid) < 0 || mtcp_puts(b, ",") < 0 ||
                          mtcp_put_i64(b, e->gid) < 0 || mtcp_puts(b, "]") < 0 ||
                          mtcp_key(b, "path") < 0 ||
                          mtcp_put_str(b, links->p + e->path, e->pathlen) < 0)
                return -1;
            /* the content once per file, however often it is open */
            if (first ? mtcp_put_file_data(dirfd, name, e->fd, e->size) < 0 ||
                            mtcp_kv_str(b, "data", name) < 0
                      : mtcp_kv_raw(b, "data", "null") < 0)
                return -1;
            break;
        }
        case FD_EPOLL:
            if (mtcp_kv_raw(b, "watch", links->p + e->path) < 0)
                return -1;
            break;
        case FD_LISTEN:
            if (mtcp_kv_i64(b, "type", e->stype) < 0 || mtcp_key(b, "path") < 0 ||
                mtcp_put_str(b, links->p + e->path, e->pathlen) < 0)
                return -1;
            break;
        case FD_PIPE: {
            if (mtcp_kv_u64(b, "ino", e->ino) < 0)
                return -1;
            int seen = 0;
            for (int k = 0; k < nreaders; k++)
                seen |= reader_ino[k] == e->ino;
            if ((e->flags & O_ACCMODE) == O_RDONLY && !seen && nreaders < 64) {
                reader_ino[nreaders++] = e->ino;
                if (mtcp_put_pipe_data(b, e->fd, tmp) < 0)
                    return -1;
            }
            break;
        }
        }
        if (mtcp_puts(b, "}") < 0)
            return -1;
    }
    return mtcp_puts(b, "]");
}
