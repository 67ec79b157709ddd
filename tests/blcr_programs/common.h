/* Shared scaffolding of the blcr state programs (tests/test_blcr_states.py).
 *
 * Every program: sets up one kind of state and records what it expects, applies the sabotage
 * when BLCR_TEST_SABOTAGE=1 (a change the checks must catch), prints READY, then runs or blocks
 * until SIGTERM. The SIGTERM handler only sets a flag and writes a byte to a self-pipe; the
 * program then checks its state, prints OK and exits 0, or prints one "FAIL: ..." line per
 * failed check on stderr and exits 1. Setup errors exit 2.
 */
#ifndef BLCR_COMMON_H
#define BLCR_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t term_flag;
static int term_pipe[2] = {-1, -1};
static int failures;
static char stdout_buf[4096];

#define FAIL(...)                                                                                 \
    do {                                                                                          \
        fprintf(stderr, "FAIL: " __VA_ARGS__);                                                    \
        fputc('\n', stderr);                                                                      \
        failures++;                                                                               \
    } while (0)
#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond))                                                                              \
            FAIL(__VA_ARGS__);                                                                    \
    } while (0)
#define DIE(what)                                                                                 \
    do {                                                                                          \
        fprintf(stderr, "FAIL: setup: %s: %s\n", what, strerror(errno));                         \
        exit(2);                                                                                  \
    } while (0)

static inline void on_term(int sig)
{
    int saved = errno;
    (void)sig;
    term_flag = 1;
    if (write(term_pipe[1], "t", 1) < 0) {
        /* the pipe is full: the flag is enough */
    }
    errno = saved;
}

/* stdout buffered in a static buffer (no malloc by stdio), SIGTERM handler without SA_RESTART. */
static inline void common_init(void)
{
    struct sigaction sa;

    setvbuf(stdout, stdout_buf, _IOFBF, sizeof stdout_buf);
    if (pipe2(term_pipe, O_CLOEXEC) != 0)
        DIE("pipe2");
    if (fcntl(term_pipe[1], F_SETFL, O_NONBLOCK) != 0)
        DIE("fcntl");
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0)
        DIE("sigaction SIGTERM");
}

static inline int sabotage(void)
{
    const char *s = getenv("BLCR_TEST_SABOTAGE");
    return s != NULL && strcmp(s, "1") == 0;
}

static inline void ready(void)
{
    fputs("READY\n", stdout);
    fflush(stdout);
}

/* Block in read() on the self-pipe until SIGTERM arrived. */
static inline void wait_term(void)
{
    char c;
    for (;;) {
        ssize_t n = read(term_pipe[0], &c, 1);
        if (n == 1)
            return;
        if (n < 0 && errno == EINTR)
            continue;
        DIE("read self-pipe");
    }
}

static inline int finish(void)
{
    if (failures)
        return 1;
    fputs("OK\n", stdout);
    fflush(stdout);
    return 0;
}

static inline double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sleep for `sec` seconds even if signal handlers interrupt the sleep. */
static inline void sleep_through(double sec)
{
    struct timespec ts = {(time_t)sec, (long)((sec - (time_t)sec) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A reproducible byte pattern: byte i of a region seeded with `seed`. */
static inline uint8_t pattern_byte(uint64_t seed, uint64_t i)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed * 0xD1B54A32D192ED03ull;
    x ^= x >> 29;
    return (uint8_t)(x * 0xBF58476D1CE4E5B9ull >> 56);
}

static inline void fill_pattern(void *p, size_t n, uint64_t seed)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = pattern_byte(seed, i);
}

/* Offset of the first byte that differs from the pattern, or -1. */
static inline long check_pattern(const void *p, size_t n, uint64_t seed)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern_byte(seed, i))
            return (long)i;
    return -1;
}

/* The "rwxp" permissions and the path of the /proc/self/maps line holding `addr`; 0 if none. */
static inline int maps_lookup(const void *addr, char perms[5], char *path, size_t pathlen)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int found = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char p[5];
        int off = 0;
        if (sscanf(line, "%lx-%lx %4s %*s %*s %*s%n", &lo, &hi, p, &off) < 3)
            continue;
        if ((unsigned long)addr >= lo && (unsigned long)addr < hi) {
            char *s = line + off;
            while (*s == ' ')
                s++;
            s[strcspn(s, "\n")] = 0;
            memcpy(perms, p, 5);
            if (path != NULL) {
                strncpy(path, s, pathlen - 1);
                path[pathlen - 1] = 0;
            }
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

#endif
