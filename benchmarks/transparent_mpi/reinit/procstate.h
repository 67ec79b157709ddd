/* procstate.h: what MPI leaves in a process (threads, descriptors, notable mappings), and
 * adopting a new launcher's PMI/PMIx environment and descriptor from the parent process
 * (the per-rank restore program started by the new launcher). Shared by probe.c and libvmpi.c. */
#ifndef REINIT_PROCSTATE_H
#define REINIT_PROCSTATE_H
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((unused)) static void procstate_dump(const char *label, int rank)
{
    char path[300], buf[512];
    DIR *d;
    struct dirent *e;
    int n;
    fprintf(stderr, "[%d] --- %s: pid %d ppid %d\n", rank, label, (int)getpid(), (int)getppid());
    /* threads */
    n = 0;
    buf[0] = 0;
    d = opendir("/proc/self/task");
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char comm[64] = "?";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f) { if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0; fclose(f); }
        size_t l = strlen(buf);
        snprintf(buf + l, sizeof buf - l, " %s(%s)", e->d_name, comm);
        n++;
    }
    if (d) closedir(d);
    fprintf(stderr, "[%d]   threads %d:%s\n", rank, n, buf);
    /* descriptors */
    d = opendir("/proc/self/fd");
    int dfd = d ? dirfd(d) : -1;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dfd) continue;
        char tgt[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, tgt, sizeof tgt - 1);
        tgt[k > 0 ? k : 0] = 0;
        fprintf(stderr, "[%d]   fd %s -> %s\n", rank, e->d_name, tgt);
    }
    if (d) closedir(d);
    /* mappings: count, and the ones that matter for a checkpoint */
    FILE *m = fopen("/proc/self/maps", "r");
    int total = 0;
    while (m && fgets(buf, sizeof buf, m)) {
        total++;
        if (strstr(buf, "/dev/shm") || strstr(buf, "SYSV") || strstr(buf, "memfd") ||
            strstr(buf, "(deleted)") || strstr(buf, "/dev/") ||
            (strstr(buf, "shm") && !strstr(buf, ".so")))
            fprintf(stderr, "[%d]   map %s", rank, buf);
    }
    if (m) fclose(m);
    fprintf(stderr, "[%d]   mappings %d\n", rank, total);
    if (getenv("PROBE_MAPS_DIR")) { /* keep a copy of the whole map */
        static int seq;
        snprintf(path, sizeof path, "cp /proc/%d/maps %s/maps.%d.%d", (int)getpid(), getenv("PROBE_MAPS_DIR"), (int)getpid(), seq++);
        if (system(path)) {}
    }
}

static int procstate_is_launcher_var(const char *kv)
{
    static const char *pfx[] = {"PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_", "PRTE_", NULL};
    for (int i = 0; pfx[i]; i++)
        if (!strncmp(kv, pfx[i], strlen(pfx[i]))) return 1;
    return 0;
}

/* Replace this process's launcher environment (PMI_*, PMIX_*, OMPI_*, ...) with the one of
 * process `from` (the restore program the new launcher started) and take its PMI descriptor
 * (PMI_FD) with pidfd_getfd(2). Returns 0 on success. */
__attribute__((unused)) static int procstate_adopt(pid_t from, int verbose)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)from);
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); return -1; }
    static char env[1 << 16];
    size_t len = fread(env, 1, sizeof env - 1, f);
    fclose(f);
    env[len] = 0;
    /* the PMI descriptor number the MPI library may have cached: the new one goes there */
    int oldfd = getenv("PMI_FD") ? atoi(getenv("PMI_FD")) : -1;
    /* drop the old job's variables */
    extern char **environ;
    for (;;) {
        int removed = 0;
        for (char **p = environ; *p; p++)
            if (procstate_is_launcher_var(*p)) {
                char name[256];
                size_t l = strcspn(*p, "=");
                if (l >= sizeof name) continue;
                memcpy(name, *p, l); name[l] = 0;
                unsetenv(name);
                removed = 1;
                break;
            }
        if (!removed) break;
    }
    int nvar = 0;
    for (char *kv = env; kv < env + len; kv += strlen(kv) + 1) {
        if (!procstate_is_launcher_var(kv)) continue;
        char *eq = strchr(kv, '=');
        if (!eq) continue;
        *eq = 0;
        if (!strcmp(kv, "PMI_FD")) {
            int pidfd = syscall(SYS_pidfd_open, from, 0);
            int fd = pidfd < 0 ? -1 : syscall(SYS_pidfd_getfd, pidfd, atoi(eq + 1), 0);
            if (fd < 0) { fprintf(stderr, "adopt: pidfd_getfd(%d, %s): %s\n", (int)from, eq + 1, strerror(errno)); *eq = '='; return -1; }
            close(pidfd);
            if (oldfd >= 0 && fd != oldfd) { dup2(fd, oldfd); close(fd); fd = oldfd; }
            fcntl(fd, F_SETFD, 0);
            char v[16];
            snprintf(v, sizeof v, "%d", fd);
            setenv("PMI_FD", v, 1);
            if (verbose) fprintf(stderr, "adopt: PMI_FD %s of pid %d is now fd %d\n", eq + 1, (int)from, fd);
        } else {
            setenv(kv, eq + 1, 1);
        }
        *eq = '=';
        nvar++;
    }
    if (verbose) fprintf(stderr, "adopt: %d launcher variables from pid %d\n", nvar, (int)from);
    return 0;
}

/* Close every descriptor above 2 except `keep`: what the launcher leaked into the rank
 * (hydra_pmi_proxy passes its own pipes and sockets on). */
__attribute__((unused)) static void procstate_close_leaked(int keep)
{
    DIR *d = opendir("/proc/self/fd");
    int dfd = d ? dirfd(d) : -1, fds[1024], n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && n < 1024) fds[n++] = atoi(e->d_name);
    for (int i = 0; i < n; i++)
        if (fds[i] > 2 && fds[i] != keep && fds[i] != dfd) close(fds[i]);
    if (d) closedir(d);
}
#endif
