/* A pseudo-terminal pair held by the process (master and slave, echo turned off, a window size
 * of 33x99), the main thread's CPU affinity (CPU 0 only) and nice value (7), and 1 MiB of
 * memory locked with mlock. After the restart: the slave is still a terminal of that master
 * (what the master writes the slave reads), with its settings and window size; the affinity,
 * the nice value, the lock and the locked memory's content are as they were. */
#include "common.h"

#include <pty.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <termios.h>

int main(void)
{
    common_init();
    int master, slave;
    struct winsize ws = {33, 99, 0, 0};
    if (openpty(&master, &slave, NULL, NULL, &ws) != 0)
        DIE("openpty");
    struct termios t;
    if (tcgetattr(slave, &t) != 0)
        DIE("tcgetattr");
    t.c_lflag &= ~(tcflag_t)ECHO;
    if (tcsetattr(slave, TCSANOW, &t) != 0)
        DIE("tcsetattr");
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(0, &cpus);
    if (sched_setaffinity(0, sizeof cpus, &cpus) != 0)
        DIE("sched_setaffinity");
    if (setpriority(PRIO_PROCESS, 0, 7) != 0)
        DIE("setpriority");
    size_t len = 1 << 20;
    char *locked = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (locked == MAP_FAILED)
        DIE("mmap");
    memset(locked, 0x5a, len);
    if (mlock(locked, len) != 0)
        DIE("mlock");
    if (sabotage()) {
        ws.ws_row = 34;
        ioctl(master, TIOCSWINSZ, &ws);
    }
    ready();
    wait_term();

    CHECK(isatty(slave), "the slave is no longer a terminal");
    struct winsize now;
    CHECK(ioctl(master, TIOCGWINSZ, &now) == 0 && now.ws_row == 33 && now.ws_col == 99,
          "window size %dx%d, expected 33x99", now.ws_row, now.ws_col);
    CHECK(tcgetattr(slave, &t) == 0 && !(t.c_lflag & ECHO), "echo is back on");
    CHECK(write(master, "hello\n", 6) == 6, "cannot write to the master");
    char buf[16] = {0};
    ssize_t n = read(slave, buf, sizeof buf - 1);
    CHECK(n == 6 && memcmp(buf, "hello\n", 6) == 0, "the slave read %zd bytes %.*s", n,
          (int)(n > 0 ? n : 0), buf);
    CPU_ZERO(&cpus);
    CHECK(sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_ISSET(0, &cpus) &&
              CPU_COUNT(&cpus) == 1, "CPU affinity changed");
    errno = 0;
    int nice_now = getpriority(PRIO_PROCESS, 0);
    CHECK(errno == 0 && nice_now == 7, "nice value %d, expected 7", nice_now);
    int lo = 0;
    FILE *smaps = fopen("/proc/self/smaps", "r");
    char line[512];
    unsigned long start = 0, a, b;
    while (smaps && fgets(line, sizeof line, smaps)) {
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2) { /* a mapping's first line */
            start = a;
            continue;
        }
        if (start == (unsigned long)locked && strncmp(line, "VmFlags:", 8) == 0)
            lo = strstr(line, " lo") != NULL;
    }
    if (smaps)
        fclose(smaps);
    CHECK(lo, "the locked memory is no longer locked");
    CHECK(locked[0] == 0x5a && locked[len - 1] == 0x5a, "the locked memory lost its content");
    return finish();
}
