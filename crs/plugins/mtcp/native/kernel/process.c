/* mtcp kernel: process-wide state in image.json, but for signals and timers (signals.c): brk,
 * personality, umask, resource limits, cwd, executable, argv, the mm fields of /proc/self/stat,
 * process group and session, the auxiliary vector, and where the kernel's resume record is. */
#include "kernel.h"

#include <sys/personality.h>
#include <sys/resource.h>

int mtcp_put_process(struct buf *b, struct buf *tmp)
{
    if (mtcp_put_signals(b, tmp) < 0)
        return -1;
    if (mtcp_kv_u64(b, "brk", (uint64_t)syscall(SYS_brk, 0)) < 0 ||
        mtcp_kv_i64(b, "personality", personality(0xffffffff)) < 0 ||
        mtcp_kv_raw(b, "shared_pending", "[]") < 0)
        return -1;
    /* umask */
    if (mtcp_read_file("/proc/self/status", tmp) < 0)
        return -1;
    char *um = strstr(tmp->p, "Umask:");
    if (mtcp_kv_i64(b, "umask", um ? strtol(um + 6, NULL, 8) : 022) < 0 ||
        mtcp_key(b, "rlimits") < 0 || mtcp_puts(b, "[") < 0)
        return -1;
    for (int r = 0; r < RLIM_NLIMITS; r++) {
        struct rlimit rl;
        if (prlimit(0, r, NULL, &rl) < 0)
            return mtcp_fail_errno("reading resource limits (prlimit)", errno);
        if (mtcp_sep(b) < 0 || mtcp_puts(b, "[") < 0 || mtcp_put_i64(b, r) < 0 ||
            mtcp_puts(b, ",") < 0 ||
            mtcp_put_i64(b, rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur) < 0 ||
            mtcp_puts(b, ",") < 0 ||
            mtcp_put_i64(b, rl.rlim_max == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_max) < 0 ||
            mtcp_puts(b, "]") < 0)
            return -1;
    }
    char path[PATH_MAX];
    int n = mtcp_readlink("/proc/self/cwd", path, sizeof path);
    if (n < 0)
        return -1;
    if (n > 10 && !strcmp(path + n - 10, " (deleted)"))
        return mtcp_fail("the process works in a deleted directory (%s)", path);
    if (mtcp_puts(b, "]") < 0 || mtcp_kv_str(b, "cwd", path) < 0)
        return -1;
    if (mtcp_readlink("/proc/self/exe", path, sizeof path) < 0 || mtcp_kv_str(b, "exe", path) < 0)
        return -1;
    if (mtcp_read_file("/proc/self/cmdline", tmp) < 0 || mtcp_key(b, "argv") < 0 ||
        mtcp_puts(b, "[") < 0)
        return -1;
    for (size_t i = 0; i < tmp->len;) {
        size_t l = strnlen(tmp->p + i, tmp->len - i);
        if (mtcp_sep(b) < 0 || mtcp_put_str(b, tmp->p + i, l) < 0)
            return -1;
        i += l + 1;
    }
    if (mtcp_puts(b, "]") < 0 || mtcp_kv_raw(b, "stopped", "false") < 0)
        return -1;
    if (mtcp_read_file("/proc/self/stat", tmp) < 0)
        return -1;
    static const struct { const char *name; int field; } mm[] = {
        {"start_code", 26}, {"end_code", 27}, {"start_stack", 28}, {"start_data", 45},
        {"end_data", 46}, {"start_brk", 47}, {"arg_start", 48}, {"arg_end", 49},
        {"env_start", 50}, {"env_end", 51}};
    if (mtcp_key(b, "mm") < 0 || mtcp_puts(b, "{") < 0)
        return -1;
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++)
        if (mtcp_kv_i64(b, mm[i].name, mtcp_stat_field(tmp->p, mm[i].field)) < 0)
            return -1;
    if (mtcp_puts(b, "}") < 0 || mtcp_kv_i64(b, "pgid", mtcp_stat_field(tmp->p, 5)) < 0 ||
        mtcp_kv_i64(b, "sid", mtcp_stat_field(tmp->p, 6)) < 0)
        return -1;
    if (mtcp_read_file("/proc/self/auxv", tmp) < 0 || mtcp_key(b, "auxv") < 0 ||
        mtcp_puts(b, "\"") < 0 || mtcp_put_hex(b, tmp->p, tmp->len) < 0 || mtcp_puts(b, "\"") < 0)
        return -1;
    return mtcp_kv_u64(b, "mtcp_resume", mtcp_resume_address());
}
