/* mtcp kernel: signals and timers of the process in image.json: the 64 signal actions as the
 * kernel holds them, the three interval timers, and the POSIX timers listed in
 * /proc/self/timers with what is left of each. */
#include "kernel.h"

#include <sys/time.h>

int mtcp_put_signals(struct buf *b, struct buf *tmp)
{
    /* signal actions, as the kernel holds them */
    if (mtcp_key(b, "sigactions") < 0 || mtcp_puts(b, "[") < 0)
        return -1;
    for (int sig = 1; sig <= 64; sig++) {
        uint64_t a[4] = {0, 0, 0, 0};
        if (sig != SIGKILL && sig != SIGSTOP && syscall(SYS_rt_sigaction, sig, NULL, a, 8) < 0)
            return mtcp_fail_errno("reading signal actions (rt_sigaction)", errno);
        if (mtcp_sep(b) < 0 || mtcp_puts(b, "[") < 0)
            return -1;
        for (int i = 0; i < 4; i++)
            if ((i && mtcp_puts(b, ",") < 0) || mtcp_put_u64(b, a[i]) < 0)
                return -1;
        if (mtcp_puts(b, "]") < 0)
            return -1;
    }
    if (mtcp_puts(b, "]") < 0 || mtcp_key(b, "itimers") < 0 || mtcp_puts(b, "[") < 0)
        return -1;
    for (int w = 0; w < 3; w++) {
        struct itimerval it;
        if (getitimer(w, &it) < 0)
            return mtcp_fail_errno("reading interval timers (getitimer)", errno);
        int64_t v[4] = {it.it_interval.tv_sec, it.it_interval.tv_usec, it.it_value.tv_sec,
                        it.it_value.tv_usec};
        if (mtcp_sep(b) < 0 || mtcp_puts(b, "[") < 0)
            return -1;
        for (int i = 0; i < 4; i++)
            if ((i && mtcp_puts(b, ",") < 0) || mtcp_put_i64(b, v[i]) < 0)
                return -1;
        if (mtcp_puts(b, "]") < 0)
            return -1;
    }
    /* POSIX timers, from /proc/self/timers */
    if (mtcp_puts(b, "]") < 0 || mtcp_key(b, "posix_timers") < 0 || mtcp_puts(b, "[") < 0)
        return -1;
    if (mtcp_read_file("/proc/self/timers", tmp) < 0)
        return -1;
    for (char *l = tmp->p; l && *l;) {
        if (strncmp(l, "ID: ", 4) != 0) {
            l = strchr(l, '\n');
            l = l ? l + 1 : NULL;
            continue;
        }
        long id = strtol(l + 4, NULL, 10), signo = 0, clockid = 0, target = 0;
        uint64_t value = 0;
        char notify[16] = "signal";
        for (int i = 0; i < 4 && l; i++) {
            if (!strncmp(l, "signal: ", 8)) {
                char *end;
                signo = strtol(l + 8, &end, 10);
                if (*end == '/')
                    value = strtoull(end + 1, NULL, 16);
            } else if (!strncmp(l, "notify: ", 8)) {
                size_t k = 0;
                for (const char *p = l + 8; *p && *p != '/' && k < sizeof notify - 1; p++)
                    notify[k++] = *p;
                notify[k] = 0;
                const char *dot = strchr(l, '.');
                const char *nl = strchr(l, '\n');
                if (dot && (!nl || dot < nl))
                    target = strtol(dot + 1, NULL, 10);
            } else if (!strncmp(l, "ClockID: ", 9)) {
                clockid = strtol(l + 9, NULL, 10);
            }
            l = strchr(l, '\n');
            l = l ? l + 1 : NULL;
        }
        struct itimerspec its;
        if (syscall(SYS_timer_gettime, (int)id, &its) < 0)
            return mtcp_fail("reading POSIX timer %ld (timer_gettime): %s", id, errname(errno));
        if (mtcp_sep(b) < 0 || mtcp_puts(b, "{") < 0 || mtcp_kv_i64(b, "id", id) < 0 ||
            mtcp_kv_i64(b, "signo", signo) < 0 || mtcp_kv_u64(b, "value", value) < 0 ||
            mtcp_kv_str(b, "notify", notify) < 0 || mtcp_kv_i64(b, "target", target) < 0 ||
            mtcp_kv_i64(b, "clockid", clockid) < 0 || mtcp_key(b, "interval") < 0 ||
            mtcp_puts(b, "[") < 0 || mtcp_put_i64(b, its.it_interval.tv_sec) < 0 ||
            mtcp_puts(b, ",") < 0 || mtcp_put_i64(b, its.it_interval.tv_nsec) < 0 ||
            mtcp_puts(b, "]") < 0 || mtcp_key(b, "remaining") < 0 || mtcp_puts(b, "[") < 0 ||
            mtcp_put_i64(b, its.it_value.tv_sec) < 0 || mtcp_puts(b, ",") < 0 ||
            mtcp_put_i64(b, its.it_value.tv_nsec) < 0 || mtcp_puts(b, "]}") < 0)
            return -1;
    }
    return mtcp_puts(b, "]");
}
