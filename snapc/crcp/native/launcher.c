/* launcher.c: the launcher's side of a rank. What hydra leaked into the rank is closed when the
 * layer is loaded; its PMI descriptor stays open and is named to the image (crcp_launcher_fd) to
 * be left out; after a restart the rank adopts its new launcher's environment (PMI, hydra, MPICH
 * and UCX settings) and descriptor. */
#include "layer.h"

/* Descriptors: what the launcher leaked into the rank is closed at load (hydra passes its own
 * pipes and sockets on, which the image could not hold); what MPI leaves open after a session
 * is finalized is closed at teardown (session.c). The PMI descriptor stays open (a rebuild in
 * the same job talks to the same launcher): the image leaves it out (crcp_launcher_fd), and a
 * restored rank takes its new launcher's instead. */
static int is_rank(void) { return getenv("PYCRS_CRCP") && getenv("PMI_FD"); }
__attribute__((constructor)) static void at_load(void)
{
    if (!is_rank()) return;
    int keep = atoi(getenv("PMI_FD"));
    DIR *d = opendir("/proc/self/fd");
    int dfd = d ? dirfd(d) : -1, fds[1024], n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && n < 1024) fds[n++] = atoi(e->d_name);
    /* inherited across the exec means not close-on-exec: one with the flag was made in this
     * process already (the mtcp kernel's socket, when its constructor ran first) */
    for (int i = 0; i < n; i++)
        if (fds[i] > 2 && fds[i] != keep && fds[i] != dfd && !(fcntl(fds[i], F_GETFD) & FD_CLOEXEC))
            close(fds[i]);
    if (d) closedir(d);
    /* children of the rank (the image dumper, any tool) are not ranks */
    unsetenv("LD_PRELOAD");
}

/* the launcher's descriptor, which the image must leave out (-1: none) */
EXPORT int crcp_launcher_fd(void) { return getenv("PMI_FD") ? atoi(getenv("PMI_FD")) : -1; }

/* ---- the launcher of a new job (after a restart) ---- */
/* the launcher's, and the settings of MPI and its transports for the new job: UCX's too, which
 * ompi-restart sets when the ranks come back in PID namespaces of their own (UCX's shared-memory
 * transports cannot reach a peer there) */
static int is_launcher_var(const char *kv)
{
    static const char *pfx[] = {"PMI_", "PMIX_", "HYDRA_", "MPIR_CVAR_", "UCX_", NULL};
    for (int i = 0; pfx[i]; i++)
        if (!strncmp(kv, pfx[i], strlen(pfx[i]))) return 1;
    return 0;
}
/* Take the launcher environment (PMI_*) of process `from` (the opal-restart the new launcher
 * started, our parent) in place of the old job's, and its PMI descriptor with pidfd_getfd(2),
 * at the number MPICH will read from PMI_FD. */
int adopt_launcher(pid_t from, char *err, int errlen)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)from);
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    size_t cap = 1 << 16, len = 0;
    char *env = malloc(cap + 1);
    for (size_t k; env && (k = fread(env + len, 1, cap - len, f)) > 0;) {
        len += k;
        if (len == cap) { cap *= 2; env = realloc(env, cap + 1); }
    }
    fclose(f);
    if (!env) { snprintf(err, errlen, "out of memory"); return -1; }
    env[len] = 0;
    extern char **environ;
    for (int removed = 1; removed;) {
        removed = 0;
        for (char **p = environ; *p; p++)
            if (is_launcher_var(*p)) {
                char name[256];
                size_t l = strcspn(*p, "=");
                if (l >= sizeof name) continue;
                memcpy(name, *p, l);
                name[l] = 0;
                unsetenv(name);
                removed = 1;
                break;
            }
    }
    int rc = 0;
    for (char *kv = env; kv < env + len; kv += strlen(kv) + 1) {
        char *eq = strchr(kv, '=');
        if (!is_launcher_var(kv) || !eq) continue;
        *eq = 0;
        if (!strcmp(kv, "PMI_FD")) {
            int pidfd = syscall(SYS_pidfd_open, from, 0);
            int fd = pidfd < 0 ? -1 : syscall(SYS_pidfd_getfd, pidfd, atoi(eq + 1), 0);
            if (fd < 0) {
                snprintf(err, errlen, "cannot take the launcher's PMI descriptor %s from process "
                         "%d: %s", eq + 1, (int)from, strerror(errno));
                rc = -1;
            } else {
                fcntl(fd, F_SETFD, 0);
                char v[16];
                snprintf(v, sizeof v, "%d", fd);
                setenv("PMI_FD", v, 1);
            }
            if (pidfd >= 0) close(pidfd);
        } else {
            setenv(kv, eq + 1, 1);
        }
        *eq = '=';
    }
    free(env);
    return rc;
}
