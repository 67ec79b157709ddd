/* mtcp kernel: the forked writer (crs_mtcp_forked): a copy-on-write child writes pages.img and
 * image.json from its copy of the memory while the application's threads run again, and reports
 * to the manager through a pipe. */
#include "kernel.h"

#include <sys/prctl.h>
#include <sys/wait.h>

/* What a forked writer tells the manager before it ends. */
struct report {
    int32_t rc;
    uint64_t stored;
    char err[sizeof mtcp.err];
};

/* The forked writer: a copy-on-write child made with a raw clone, exit signal 0 (so that the
 * application's wait() and its SIGCHLD never see it) and no atfork handler, writes the frozen
 * copy while the application runs again. It has only this thread, and the locks other threads
 * held stay held in it forever: it keeps to what the manager does while threads are held (raw
 * system calls, buffers of its own). Its PID, or -1; *report_fd reads its report. */
long mtcp_fork_writer(struct plan *P, int dirfd, int level, unsigned char *codec, int *report_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return mtcp_fail_errno("a pipe for the image writer", errno);
    mtcp_own_add(p[0]);
    mtcp_own_add(p[1]);
    long pid = syscall(SYS_clone, 0UL, 0UL, NULL, NULL, 0UL);
    if (pid == 0) {
        /* an image of a process that is gone is of no use: end with it */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != mtcp.pid)
            syscall(SYS_exit_group, 1);
        /* the application's descriptors: held here, they would delay an EOF it waits for */
        const struct fdrec *r = (const struct fdrec *)P->recs.p;
        for (size_t i = 0; i < P->recs.len / sizeof *r; i++)
            close(r[i].fd);
        close(p[0]);
        struct report rep;
        memset(&rep, 0, sizeof rep);
        mtcp.err[0] = 0;
        rep.rc = mtcp_write_pages(P, dirfd, level, codec, &rep.stored);
        if (rep.rc == 0)
            rep.rc = mtcp_write_json(P, dirfd);
        memcpy(rep.err, mtcp.err, sizeof rep.err);
        int e = fdio_write_all(p[1], &rep, sizeof rep);
        for (;;)
            syscall(SYS_exit_group, rep.rc == 0 && e == 0 ? 0 : 1);
    }
    int e = errno;
    close(p[1]);
    mtcp_own_del(p[1]);
    if (pid < 0) {
        close(p[0]);
        mtcp_own_del(p[0]);
        return mtcp_fail("starting the image writer (clone): %s", errname(e));
    }
    *report_fd = p[0];
    return pid;
}

int mtcp_wait_writer(long pid, int fd, uint64_t *stored)
{
    int st = 0, rc = 0;
    int reaped = 1;
    while (waitpid((pid_t)pid, &st, __WALL) < 0)
        if (errno == ECHILD) {
            reaped = 0; /* an application's wait(__WALL) took it: its report still tells */
            break;
        } else if (errno != EINTR) {
            rc = mtcp_fail("waiting for the image writer (process %ld): %s", pid, errname(errno));
            break;
        }
    struct report rep;
    size_t got = 0;
    while (got < sizeof rep) {
        ssize_t n = read(fd, (char *)&rep + got, sizeof rep - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    mtcp_own_del(fd);
    if (rc < 0)
        return -1;
    if (reaped && WIFSIGNALED(st))
        return mtcp_fail("the image writer (process %ld) was killed by signal %d (%s)", pid,
                         WTERMSIG(st),
                         sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
    if (got != sizeof rep)
        return mtcp_fail("the image writer (process %ld) ended with status %d and no report", pid,
                         reaped && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    if (rep.rc) {
        rep.err[sizeof rep.err - 1] = 0;
        return mtcp_fail("%s", rep.err[0] ? rep.err : "the image writer failed");
    }
    *stored = rep.stored;
    return 0;
}
