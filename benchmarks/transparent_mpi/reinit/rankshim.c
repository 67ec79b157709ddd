/* rankshim CMD ARGS...: what a launcher starts per rank. It keeps the launcher's PMI descriptor
 * (PMI_FD) and environment for the rank, closes what the launcher leaked, and runs CMD as its
 * child (the application, or opal-restart SNAPSHOT after a restart). A rank that has torn MPI
 * down closes its own PMI descriptor (so that its image holds no socket to the launcher) and
 * takes it back from its parent with pidfd_getfd(2) before it initializes MPI again.
 * Exits with the child's status. */
#include "procstate.h"
#include <signal.h>
#include <sys/wait.h>

static pid_t child;
static void fwd(int sig) { if (child > 0) kill(child, sig); }

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: rankshim CMD ARGS...\n"); return 2; }
    int pmi = getenv("PMI_FD") ? atoi(getenv("PMI_FD")) : -1;
    procstate_close_leaked(pmi);
    if (pmi >= 0) fcntl(pmi, F_SETFD, 0);
    signal(SIGTERM, fwd); signal(SIGINT, fwd); signal(SIGUSR1, fwd); signal(SIGUSR2, fwd);
    child = fork();
    if (child == 0) { execvp(argv[1], argv + 1); perror(argv[1]); _exit(127); }
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {}
    if (WIFSIGNALED(st)) { signal(WTERMSIG(st), SIG_DFL); raise(WTERMSIG(st)); }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
