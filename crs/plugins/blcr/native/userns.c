/* blcr module: restores without privilege. Choosing a PID needs CAP_CHECKPOINT_RESTORE in the
 * user namespace that owns the PID namespace; an ordinary user has it in a user namespace of
 * their own, so the restore goes into a new user namespace that owns a new PID namespace. There
 * the caller's uid and gid map to themselves (files keep their owners, getuid() its value), the
 * init and the stub hold every capability of that namespace (from its creation), and the
 * restorer drops them from the restored process before it runs. */
#include "blcr.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CAP_CHECKPOINT_RESTORE
#define CAP_CHECKPOINT_RESTORE 40
#endif

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int err = n < 0 ? errno : (size_t)n != strlen(text) ? EIO : 0;
    close(fd);
    return -err;
}

int blcr_userns_map(int uid, int gid, const char **step)
{
    char line[64];
    int r;
    snprintf(line, sizeof line, "%d %d 1\n", uid, uid);
    if ((r = write_file("/proc/self/uid_map", line)) < 0)
        return *step = "write /proc/self/uid_map", r;
    /* an unprivileged gid map needs setgroups(2) denied in the namespace first */
    if ((r = write_file("/proc/self/setgroups", "deny")) < 0)
        return *step = "write /proc/self/setgroups", r;
    snprintf(line, sizeof line, "%d %d 1\n", gid, gid);
    if ((r = write_file("/proc/self/gid_map", line)) < 0)
        return *step = "write /proc/self/gid_map", r;
    return 0;
}

int blcr_keep_restore_cap(void)
{
    struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &head, data) < 0)
        return -errno;
    /* an ambient capability must be permitted and inheritable */
    data[CAP_CHECKPOINT_RESTORE / 32].inheritable |= 1u << (CAP_CHECKPOINT_RESTORE % 32);
    if (syscall(SYS_capset, &head, data) < 0)
        return -errno;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_CHECKPOINT_RESTORE, 0, 0) < 0)
        return -errno;
    return 0;
}

int blcr_drop_caps(void)
{
    struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct none[2];
    memset(none, 0, sizeof none);
    return syscall(SYS_capset, &head, none) < 0 ? -errno : 0;
}

int blcr_probe_userns(int uid, int gid, const char **step)
{
    struct clone_args args;
    int pipefd[2];
    *step = "pipe";
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS;
    args.exit_signal = SIGCHLD;
    *step = "clone3(CLONE_NEWUSER | CLONE_NEWPID)";
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0) {
        int err = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return -err;
    }
    if (pid == 0) {
        /* what a restore does there: the maps, a /proc of the namespace, a chosen PID */
        const char *what = "";
        int r = blcr_userns_map(uid, gid, &what);
        if (r == 0 && mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
            r = -errno, what = "mount --make-rslave /";
        if (r == 0 && mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            r = -errno, what = "mount /proc in the new PID namespace";
        if (r == 0 && write_file("/proc/sys/kernel/ns_last_pid", "100") < 0)
            r = -errno, what = "write /proc/sys/kernel/ns_last_pid";
        if (r < 0) {
            char msg[160];
            int n = snprintf(msg, sizeof msg, "%s:%d", what, -r);
            (void)!write(pipefd[1], msg, (size_t)n);
        }
        _exit(r < 0 ? 1 : 0);
    }
    close(pipefd[1]);
    static char said[160];
    ssize_t n = read(pipefd[0], said, sizeof said - 1);
    close(pipefd[0]);
    int st;
    while (waitpid((pid_t)pid, &st, 0) < 0)
        if (errno != EINTR)
            return *step = "waitpid", -errno;
    if (n <= 0)
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : (*step = "the probe process", -EPROTO);
    said[n] = 0;
    char *colon = strrchr(said, ':');
    if (!colon)
        return *step = "the probe process", -EPROTO;
    *colon = 0;
    *step = said;
    return -atoi(colon + 1);
}
