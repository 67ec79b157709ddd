/* mtcp kernel: start-up and life cycle. The constructor checks for XSAVE, takes the kernel's
 * signal, makes the control socket and starts the manager thread; a forked child has no kernel;
 * the two functions the library exports say whether it serves. Also the kernel's state, its
 * record of errors and the descriptors it holds itself. The whole picture is in kernel.h. */
#include "kernel.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdarg.h>

struct mtcp_kernel mtcp = {.listen_fd = -1};

/* descriptors of the kernel itself, never part of the image */
static int own_fds[16];
static int n_own;

void mtcp_own_add(int fd)
{
    if (fd >= 0 && n_own < 16)
        own_fds[n_own++] = fd;
}

void mtcp_own_del(int fd)
{
    for (int i = 0; i < n_own; i++)
        if (own_fds[i] == fd) {
            own_fds[i] = own_fds[--n_own];
            return;
        }
}

int mtcp_is_own(int fd)
{
    for (int i = 0; i < n_own; i++)
        if (own_fds[i] == fd)
            return 1;
    return 0;
}

void mtcp_own_forget(void) { n_own = 0; }

int mtcp_fail(const char *fmt, ...)
{
    if (mtcp.err[0])
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mtcp.err, sizeof mtcp.err, fmt, ap);
    va_end(ap);
    return -1;
}

int mtcp_fail_errno(const char *step, int e)
{
    return mtcp_fail("%s: %s", step, errname(e));
}

static void at_fork_child(void)
{
    /* a forked child has no manager thread: no kernel (an exec'd program loads its own) */
    if (mtcp.listen_fd >= 0)
        close(mtcp.listen_fd);
    mtcp.listen_fd = -1;
    mtcp.ready = 0;
    mtcp.sock_path[0] = 0;
    mtcp_own_forget();
}

__attribute__((constructor)) static void mtcp_init(void)
{
    if (getenv("MTCP_DISABLE"))
        return;
    mtcp.pid = getpid();
    mtcp.sig = SIGRTMAX - 2;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(0xd, 0, &a, &b, &c, &d) || b > XSTATE_MAX) {
        static const char m[] = "mtcp: no XSAVE support on this CPU; the kernel is off\n";
        (void)!write(2, m, sizeof m - 1);
        return;
    }
    mtcp.xsize = b;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    mtcp.xmask = ((uint64_t)hi << 32) | lo;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = mtcp_on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(mtcp.sig, NULL, &old) == 0 && old.sa_handler != SIG_DFL) {
        char m[128];
        int n = snprintf(m, sizeof m,
                         "mtcp: signal %d is in use by the program; the kernel is off\n", mtcp.sig);
        (void)!write(2, m, (size_t)n);
        return;
    }
    if (sigaction(mtcp.sig, &sa, NULL) < 0 || mtcp_make_socket() < 0) {
        char m[700];
        int n = snprintf(m, sizeof m, "mtcp: kernel not started in process %d: %s\n", mtcp.pid,
                         mtcp.err);
        (void)!write(2, m, (size_t)n);
        return;
    }
    sigset_t all, prev;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &prev);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 1UL << 20);
    int e = pthread_create(&t, &at, mtcp_manager_main, NULL);
    pthread_attr_destroy(&at);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    if (e) {
        char m[160];
        int n = snprintf(m, sizeof m,
                         "mtcp: kernel not started in process %d: manager thread: %s\n", mtcp.pid,
                         errname(e));
        (void)!write(2, m, (size_t)n);
        unlink(mtcp.sock_path);
        return;
    }
    mtcp.ready = 1;
    pthread_atfork(NULL, NULL, at_fork_child);
}

__attribute__((destructor)) static void mtcp_fini(void)
{
    if (mtcp.ready && mtcp.sock_path[0] && getpid() == mtcp.pid)
        unlink(mtcp.sock_path);
}

/* For a program or Python (ctypes) to ask: 1 when the kernel serves requests here. */
EXPORT int mtcp_kernel_ready(void) { return mtcp.ready && mtcp.listen_fd >= 0; }

/* The socket the kernel serves requests on ("" when it does not). */
EXPORT const char *mtcp_socket_path(void) { return mtcp.ready ? mtcp.sock_path : ""; }
