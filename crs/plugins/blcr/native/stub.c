/* blcr module: the restore stub. A restore starts from a child of the restoring tool, forked
 * with the PID of the image (clone3's set_tid), optionally as the first process of a new PID
 * namespace under an init of ours (in a new user namespace too, for callers without the
 * privilege to choose PIDs here, userns.c): it takes the restored process's descriptors, cwd, umask,
 * session, limits and signal actions (crs/native/stub.h), maps a page with a syscall
 * instruction, and stops for the tracer; or it execs the mtcp restart program. A failure in the
 * child is written to the error pipe as "what:errno". */
#include "blcr.h"

#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stub.h"

static void stub_fail(int fd, const char *what, int err)
{
    char msg[160];
    size_t n = stub_failure(msg, what, 120, err);
    (void)!write(fd, msg, n);
    _exit(127);
}

/* In the child: take the restored process's descriptors, cwd, umask, limits and signal
 * dispositions, map the syscall page, then stop for the tracer. Never returns. */
static void stub_child(const struct blcr_stub_plan *p, int traceme)
{
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    if (traceme && ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
        stub_fail(p->err_fd, "ptrace(TRACEME)", errno);
    /* lift every source above every target first, so no dup3 overwrites one still needed */
    int top = p->err_fd;
    for (int i = 0; i < p->nmoves; i++) {
        if (p->moves[3 * i] > top) top = p->moves[3 * i];
        if (p->moves[3 * i + 1] > top) top = p->moves[3 * i + 1];
    }
    for (int i = 0; i < p->nepoll; i++)
        if (p->epoll[5 * i + 1] > top) top = (int)p->epoll[5 * i + 1];
    if (p->cwd_fd > top) top = p->cwd_fd;
    int base = top + 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)(base + p->nmoves + 2)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int errfd = fcntl(p->err_fd, F_DUPFD_CLOEXEC, base);
    if (errfd < 0)
        stub_fail(p->err_fd, "lift error pipe", errno);
    int cwd = fcntl(p->cwd_fd, F_DUPFD_CLOEXEC, base);
    if (cwd < 0)
        stub_fail(errfd, "lift cwd", errno);
    int *lifted = alloca(sizeof(int) * (size_t)(p->nmoves + 1));
    for (int i = 0; i < p->nmoves; i++) {
        lifted[i] = fcntl(p->moves[3 * i], F_DUPFD_CLOEXEC, base);
        if (lifted[i] < 0)
            stub_fail(errfd, "lift descriptor", errno);
    }
    /* close everything below base, then place each descriptor */
    if (syscall(SYS_close_range, 0, (unsigned)base - 1, 0) < 0)
        stub_fail(errfd, "close_range", errno);
    /* epoll keys a watch by file and number, and a number may be watched for a file it no
     * longer holds: each watch is added with its file lent the number for the moment */
    for (int i = 0; i < p->nepoll; i++) {
        const int64_t *w = p->epoll + 5 * i;
        int ep = -1, holder = -1;
        for (int k = 0; k < p->nmoves; k++) {
            if (p->moves[3 * k + 1] == w[0]) ep = lifted[k];
            if (p->moves[3 * k + 1] == w[4]) holder = lifted[k];
        }
        if (ep < 0 || holder < 0)
            stub_fail(errfd, "epoll watch of a descriptor not in the image", EBADF);
        if (dup3(holder, (int)w[1], 0) < 0)
            stub_fail(errfd, "lend a watched descriptor its number", errno);
        struct { uint32_t events; uint64_t data; } __attribute__((packed)) ev = {
            (uint32_t)w[2], (uint64_t)w[3]};
        if (syscall(SYS_epoll_ctl, ep, 1 /* ADD */, (int)w[1], &ev) < 0)
            stub_fail(errfd, "epoll_ctl", errno);
        if (close((int)w[1]) < 0)
            stub_fail(errfd, "close a lent number", errno);
    }
    for (int i = 0; i < p->nmoves; i++) {
        if (dup3(lifted[i], p->moves[3 * i + 1], p->moves[3 * i + 2] ? O_CLOEXEC : 0) < 0)
            stub_fail(errfd, "place descriptor", errno);
    }
    if (fchdir(cwd) < 0)
        stub_fail(errfd, "fchdir", errno);
    if (p->session == 1 && setsid() < 0)
        stub_fail(errfd, "setsid", errno);
    if (p->session == 2 && setpgid(0, 0) < 0)
        stub_fail(errfd, "setpgid", errno);
    umask((mode_t)p->umask);
    long r = stub_set_sigactions(p->sigactions);
    if (r < 0)
        stub_fail(errfd, "rt_sigaction", (int)-r);
    if (!p->exec_path) {
        void *code = mmap((void *)p->code_addr, p->code_len, PROT_READ | PROT_WRITE | PROT_EXEC,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (code == MAP_FAILED || (uint64_t)code != p->code_addr)
            stub_fail(errfd, "map syscall page", code == MAP_FAILED ? errno : EEXIST);
        ((unsigned char *)code)[0] = 0x0f; /* syscall */
        ((unsigned char *)code)[1] = 0x05;
        ((unsigned char *)code)[2] = 0xcc; /* int3 */
    }
    for (int i = 0; i < p->nlimits; i++) {
        struct rlimit r = {(rlim_t)p->limits[3 * i + 1], (rlim_t)p->limits[3 * i + 2]};
        if (setrlimit((int)p->limits[3 * i], &r) < 0)
            stub_fail(errfd, "setrlimit", errno);
    }
    if (p->exec_path) {
        /* the same descriptors, marked to close at the exec, so that a failing exec can still
         * say so on the error pipe; signal dispositions are the restart program's to set */
        if (syscall(SYS_close_range, (unsigned)base, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) < 0)
            stub_fail(errfd, "close_range above the descriptors", errno);
        /* in a user namespace of ours the program keeps the capability that chooses thread
         * IDs across the exec (it drops it before the process runs) */
        if (p->new_userns) {
            long r = blcr_keep_restore_cap();
            if (r < 0)
                stub_fail(errfd, "keeping CAP_CHECKPOINT_RESTORE for the restart program", (int)-r);
        }
        char *envp[] = {NULL};
        execve(p->exec_path, p->exec_argv, envp);
        stub_fail(errfd, "exec of the restart program", errno);
    }
    /* every descriptor from base up: the lifted copies, cwd, the error pipe (close-on-exec is
     * not enough: nothing is exec'd; the parent sees EOF), and whatever the restoring tool had
     * open there, which the restored process never had */
    if (syscall(SYS_close_range, (unsigned)base, ~0U, 0) < 0)
        stub_fail(errfd, "close_range above the descriptors", errno);
    syscall(SYS_kill, syscall(SYS_getpid), SIGSTOP);
    _exit(126); /* not reached: the tracer takes the process over at the stop */
}

static long clone_with_pid(pid_t *want, uint64_t flags)
{
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    if (*want > 0) {
        args.set_tid = (uint64_t)want;
        args.set_tid_size = 1;
    }
    return syscall(SYS_clone3, &args, sizeof args);
}

/* Close every descriptor but a and b (-1: none). */
static void close_all_but(int a, int b)
{
    if (a > b) {
        int t = a;
        a = b;
        b = t;
    }
    unsigned from = 0;
    for (int k = 0; k < 2; k++) {
        int keep = k ? b : a;
        if (keep < 0)
            continue;
        if ((unsigned)keep > from)
            syscall(SYS_close_range, from, (unsigned)keep - 1, 0);
        from = (unsigned)keep + 1;
    }
    syscall(SYS_close_range, from, ~0U, 0);
}

/* PID 1 of a fresh namespace: starts the stub with its PID there, drops every descriptor it
 * inherited but the one a restored MPI rank takes from it (a pipe end kept open here would keep
 * the restored process from seeing EOF), and lives as long as the restored process, exiting
 * with its status (128+signal if killed; the raw status also goes to status_fd, so that the
 * restoring tool can end the same way). */
static void pidns_init(const struct blcr_stub_plan *p)
{
    if (p->new_userns) {
        const char *step = "";
        int r = blcr_userns_map(p->uid, p->gid, &step);
        if (r < 0)
            stub_fail(p->err_fd, step, -r);
    }
    /* a /proc of the new namespace (in a mount namespace of its own that still receives the
     * host's mounts), so that the process sees its own PID and TIDs there */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        stub_fail(p->err_fd, "mount --make-rslave /", errno);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        stub_fail(p->err_fd, "mount /proc", errno);
    pid_t want = p->want_pid;
    long stub = clone_with_pid(&want, 0);
    if (stub < 0)
        stub_fail(p->err_fd, "clone3 in the new PID namespace", errno);
    if (stub == 0)
        stub_child(p, 0);
    /* a process with capabilities its restored child lacks is out of that child's reach: an
     * MPI rank reads its launcher's environment and descriptor here */
    long dropped = p->new_userns ? blcr_drop_caps() : 0;
    if (dropped < 0)
        stub_fail(p->err_fd, "dropping the capabilities of the namespace's init", (int)-dropped);
    close_all_but(p->init_keep_fd, p->status_fd);
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, 0);
        if (r < 0 && errno != EINTR)
            _exit(127);
        if (r == stub && (WIFEXITED(st) || WIFSIGNALED(st))) {
            if (p->status_fd >= 0)
                (void)!write(p->status_fd, &st, sizeof st);
            _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
    }
}

/* The stub's PID here, once the init of its namespace has started it and it has stopped. */
static int find_stopped_child(int init, int any_state)
{
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", init, init);
    for (int tries = 0; tries < 10000; tries++) {
        int st;
        if (waitpid(init, &st, WNOHANG) == init)
            return -ECHILD; /* init ended: the child failed and said why on the error pipe */
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = 0;
            int pid = atoi(buf);
            char stat[256];
            snprintf(path, sizeof path, "/proc/%d/stat", pid);
            fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                n = read(fd, stat, sizeof stat - 1);
                close(fd);
                char *end = n > 0 ? (stat[n] = 0, strrchr(stat, ')')) : NULL;
                if (end && (any_state || end[2] == 'T'))
                    return pid;
            }
            snprintf(path, sizeof path, "/proc/%d/task/%d/children", init, init);
        }
        usleep(1000);
    }
    return -ETIMEDOUT;
}

static int spawn_stub(const struct blcr_stub_plan *plan, int *init);

/* Fork the stub (with the PID asked for, through clone3's set_tid) and wait until it stops
 * under our trace (or, with exec_path, until it runs: it then execs that program). Returns its PID, or -errno; a failure inside the child is written to
 * plan->err_fd. With new_pidns, *init is the namespace's first process, the one to wait for. */
int blcr_spawn_stub(const struct blcr_stub_plan *plan, int *init)
{
    /* the child starts with every signal blocked: one sent to the restored PID this early
     * stays queued for the restored process instead of meeting our handlers */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = spawn_stub(plan, init);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

static int spawn_stub(const struct blcr_stub_plan *plan, int *init)
{
    pid_t want = plan->want_pid;
    int st, r;
    long pid;
    *init = 0;
    if (plan->new_pidns) {
        pid_t any = 0;
        long first = clone_with_pid(&any, CLONE_NEWPID | CLONE_NEWNS
                                                | (plan->new_userns ? CLONE_NEWUSER : 0));
        if (first < 0)
            return -errno;
        if (first == 0)
            pidns_init(plan);
        *init = (int)first;
        pid = find_stopped_child((int)first, plan->exec_path != NULL);
        if (pid < 0 || plan->exec_path)
            return (int)pid;
        if (ptrace(PTRACE_SEIZE, pid, 0,
                   PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE) < 0)
            return -errno;
        if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0)
            return -errno;
        return (r = blcr_wait_stop((int)pid, &st)) < 0 ? r : (int)pid;
    }
    pid = clone_with_pid(&want, 0);
    if (pid < 0)
        return -errno;
    if (pid == 0)
        stub_child(plan, !plan->exec_path);
    if (plan->exec_path)
        return (int)pid; /* it says how it went on the error pipe */
    if ((r = blcr_wait_stop((int)pid, &st)) < 0)
        return r;
    if (WSTOPSIG(st) != SIGSTOP) {
        kill((pid_t)pid, SIGKILL);
        waitpid((pid_t)pid, &st, __WALL);
        return -EPROTO;
    }
    if (ptrace(PTRACE_SETOPTIONS, pid, 0,
               PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE) < 0)
        return -errno;
    return (int)pid;
}
