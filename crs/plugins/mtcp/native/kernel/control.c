/* mtcp kernel: the control socket and the manager thread's loop. The socket is <control
 * dir>/mtcp-<PID>.sock, private to the user; a connection from another user is refused. One
 * JSON line per request ("ping", or "checkpoint" with its dir, compress, forked and omit),
 * JSON-line events in reply ("progress", then "done" or "error"). */
#include "kernel.h"

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/time.h>

static void reply(int conn, const char *json)
{
    if (conn < 0)
        return;
    char line[1024];
    size_t n = strlen(json);
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    memcpy(line, json, n);
    line[n++] = '\n';
    (void)fdio_write_all(conn, line, n);
}

void mtcp_progress(int conn, const char *msg)
{
    struct buf b = {0};
    if (mtcp_puts(&b, "{\"event\":\"progress\",\"message\":") == 0 && mtcp_put_cstr(&b, msg) == 0 &&
        mtcp_puts(&b, "}") == 0)
        reply(conn, b.p);
    mtcp_buf_free(&b);
}

/* Where the value of "name" starts in a one-line JSON object (no nesting needed), or NULL. */
static const char *json_value(const char *js, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", name);
    const char *p = strstr(js, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == ':')
        p++;
    return p;
}

/* The string value of "name" in a one-line JSON object; 0 if absent. */
static int json_string(const char *js, const char *name, char *out, size_t cap)
{
    const char *p = json_value(js, name);
    if (!p || *p != '"')
        return 0;
    p++;
    size_t n = 0;
    while (*p && *p != '"' && n + 4 < cap) {
        if (*p != '\\') {
            out[n++] = *p++;
            continue;
        }
        p++;
        char c = *p++;
        switch (c) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'u': {
            unsigned cp = (unsigned)strtoul((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
            p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = (unsigned)strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp < 0x80) {
                out[n++] = (char)cp;
            } else if (cp < 0x800) {
                out[n++] = (char)(0xc0 | cp >> 6);
                out[n++] = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                out[n++] = (char)(0xe0 | cp >> 12);
                out[n++] = (char)(0x80 | (cp >> 6 & 0x3f));
                out[n++] = (char)(0x80 | (cp & 0x3f));
            } else {
                out[n++] = (char)(0xf0 | cp >> 18);
                out[n++] = (char)(0x80 | (cp >> 12 & 0x3f));
                out[n++] = (char)(0x80 | (cp >> 6 & 0x3f));
                out[n++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default: out[n++] = c;
        }
    }
    out[n] = 0;
    return *p == '"';
}

/* A number or boolean "name" in a one-line JSON object: 1 when present and true or non-zero. */
static int json_flag(const char *js, const char *name)
{
    const char *p = json_value(js, name);
    return p && (!strncmp(p, "true", 4) || strtol(p, NULL, 10) != 0);
}

/* Answer one connection; 1 when the process was restored meanwhile (conn is history). */
static int serve(int conn)
{
    struct ucred cr;
    socklen_t cl = sizeof cr;
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 || cr.uid != getuid()) {
        reply(conn, "{\"event\":\"error\",\"message\":\"permission denied\"}");
        return 0;
    }
    struct timeval tv = {10, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char line[8192];
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read(conn, line + n, sizeof line - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (memchr(line, '\n', n))
            break;
    }
    line[n] = 0;
    char op[32], dir[PATH_MAX];
    if (!json_string(line, "op", op, sizeof op)) {
        reply(conn, "{\"event\":\"error\",\"message\":\"malformed request\"}");
        return 0;
    }
    if (!strcmp(op, "ping")) {
        struct buf b = {0};
        if (mtcp_puts(&b, "{\"event\":\"done\"") == 0 && mtcp_kv_i64(&b, "pid", mtcp.pid) == 0 &&
            mtcp_kv_i64(&b, "restarts", mtcp.restarts) == 0 &&
            mtcp_kv_i64(&b, "signal", mtcp.sig) == 0 && mtcp_puts(&b, "}") == 0)
            reply(conn, b.p);
        mtcp_buf_free(&b);
        return 0;
    }
    if (strcmp(op, "checkpoint")) {
        struct buf b = {0};
        if (mtcp_puts(&b, "{\"event\":\"error\",\"message\":") == 0) {
            char m[80];
            snprintf(m, sizeof m, "unknown request '%.40s'", op);
            if (mtcp_put_cstr(&b, m) == 0 && mtcp_puts(&b, "}") == 0)
                reply(conn, b.p);
        }
        mtcp_buf_free(&b);
        return 0;
    }
    if (!json_string(line, "dir", dir, sizeof dir) || !dir[0]) {
        reply(conn, "{\"event\":\"error\",\"message\":\"checkpoint request without a dir\"}");
        return 0;
    }
    struct request q;
    memset(&q, 0, sizeof q);
    char comp[32] = "none";
    if (strstr(line, "\"compress\"") && !json_string(line, "compress", comp, sizeof comp)) {
        reply(conn, "{\"event\":\"error\",\"message\":\"compress must be a string\"}");
        return 0;
    }
    static const char *levels[] = {"none", "fast", "strong"};
    q.level = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(comp, levels[i]))
            q.level = i;
    if (q.level < 0) {
        struct buf b = {0};
        char m[96];
        snprintf(m, sizeof m, "unknown compression '%.40s' (none, fast or strong)", comp);
        if (mtcp_puts(&b, "{\"event\":\"error\",\"message\":") == 0 && mtcp_put_cstr(&b, m) == 0 &&
            mtcp_puts(&b, "}") == 0)
            reply(conn, b.p);
        mtcp_buf_free(&b);
        return 0;
    }
    q.forked = json_flag(line, "forked");
    char omit[256] = "";
    if (strstr(line, "\"omit\"") && !json_string(line, "omit", omit, sizeof omit)) {
        reply(conn, "{\"event\":\"error\",\"message\":\"omit must be a string\"}");
        return 0;
    }
    for (char *p = omit, *end; *p && q.n_omit < 64; p = *end ? end + 1 : end) {
        long fd = strtol(p, &end, 10);
        if (end == p || fd < 0 || (*end && *end != ',')) {
            reply(conn, "{\"event\":\"error\",\"message\":\"omit must list descriptor numbers\"}");
            return 0;
        }
        q.omit_fds[q.n_omit++] = (int)fd;
    }
    mtcp_own_add(conn);
    int rc = mtcp_checkpoint(conn, dir, &q);
    if (rc == 1)
        return 1; /* restored: that connection belonged to the process before */
    mtcp_own_del(conn);
    struct buf b = {0};
    if (rc == 0) {
        char fr[64], tt[64];
        snprintf(fr, sizeof fr, "%.6f", q.frozen);
        snprintf(tt, sizeof tt, "%.6f", q.total);
        if (mtcp_puts(&b, "{\"event\":\"done\"") == 0 && mtcp_kv_raw(&b, "frozen", fr) == 0 &&
            mtcp_kv_raw(&b, "total", tt) == 0 && mtcp_kv_u64(&b, "threads", q.threads) == 0 &&
            mtcp_kv_i64(&b, "forked", q.forked) == 0 && mtcp_kv_str(&b, "compress", comp) == 0 &&
            mtcp_kv_u64(&b, "raw_bytes", q.raw) == 0 &&
            mtcp_kv_u64(&b, "stored_bytes", q.stored) == 0 && mtcp_puts(&b, "}") == 0)
            reply(conn, b.p);
    } else if (mtcp_puts(&b, "{\"event\":\"error\",\"message\":") == 0 &&
               mtcp_put_cstr(&b, mtcp.err) == 0 && mtcp_puts(&b, "}") == 0) {
        reply(conn, b.p);
    }
    mtcp_buf_free(&b);
    return 0;
}

void *mtcp_manager_main(void *arg)
{
    (void)arg;
    mtcp.manager_tid = gettid_();
    prctl(PR_SET_NAME, "mtcp-manager", 0, 0, 0);
    for (;;) {
        int lfd = mtcp.listen_fd;
        if (lfd < 0)
            return NULL;
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (mtcp.listen_fd != lfd)
                continue; /* restored meanwhile: a new socket */
            return NULL;
        }
        if (serve(conn) != 1)
            close(conn);
        /* else: restored; that descriptor belonged to the process before and is not open */
    }
    return NULL;
}

static int control_dir(char *out, size_t cap)
{
    const char *env = getenv("PYCRS_CONTROL_DIR");
    if (env && env[0])
        snprintf(out, cap, "%s", env);
    else
        snprintf(out, cap, "/tmp/pycrs-%u", (unsigned)getuid());
    if (mkdir(out, 0700) < 0 && errno != EEXIST)
        return mtcp_fail("control directory %s: %s", out, errname(errno));
    struct stat st;
    if (lstat(out, &st) < 0)
        return mtcp_fail("control directory %s: %s", out, errname(errno));
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
        return mtcp_fail("control directory %s must be ours and private (mode 0700)", out);
    return 0;
}

int mtcp_make_socket(void)
{
    if (!mtcp.sock_path[0]) {
        char dir[PATH_MAX];
        if (control_dir(dir, sizeof dir) < 0)
            return -1;
        int n = snprintf(mtcp.sock_path, sizeof mtcp.sock_path, "%s/mtcp-%d.sock", dir, mtcp.pid);
        if (n < 0 || (size_t)n >= sizeof mtcp.sock_path) {
            mtcp.sock_path[0] = 0;
            return mtcp_fail("control directory %s: path too long for a socket", dir);
        }
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return mtcp_fail_errno("socket", errno);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, mtcp.sock_path, sizeof sa.sun_path);
    unlink(mtcp.sock_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(mtcp.sock_path, 0600) < 0 ||
        listen(fd, 16) < 0) {
        int e = errno;
        close(fd);
        return mtcp_fail("control socket %s: %s", mtcp.sock_path, errname(e));
    }
    mtcp_own_add(fd);
    mtcp.listen_fd = fd;
    return 0;
}
