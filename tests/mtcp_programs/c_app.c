/* A C program for the mtcp tests: three threads mix floating point (SSE/AVX through libm) and
 * integer work, the main thread writes one line per step to OUT (argv[1]) and sleeps a little
 * (a checkpoint often finds it in nanosleep, which then returns early: harmless here). At the end
 * it prints each thread's result and "done N". The output and the file are the same whether or
 * not the run was checkpointed, killed and restored. With "high" after OUT, it also keeps a page
 * at 16 TiB, where the restart program runs. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define STEPS 400
static double result[3];
static uint64_t mix[3];

static void *work(void *arg)
{
    long i = (long)arg;
    double x = 1.0 + (double)i;
    uint64_t h = 1469598103934665603ULL * (uint64_t)(i + 1);
    for (long k = 0; k < 150000000; k++) {
        x = fmod(x * 1.000001 + sqrt(x) * 0.5, 1e6);
        h = (h ^ (uint64_t)k) * 1099511628211ULL;
    }
    result[i] = x;
    mix[i] = h;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    if (argc > 2 && !strcmp(argv[2], "high")) {
        char *p = mmap((void *)0x100000000000UL, 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == MAP_FAILED)
            return 3;
        strcpy(p, "high page");
    }
    pthread_t t[3];
    for (long i = 0; i < 3; i++)
        if (pthread_create(&t[i], NULL, work, (void *)i))
            return 1;
    FILE *f = fopen(argv[1], "w");
    if (!f)
        return 1;
    printf("READY\n");
    fflush(stdout);
    for (int step = 0; step < STEPS; step++) {
        fprintf(f, "%06d %.6f\n", step, sqrt((double)step));
        fflush(f);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fclose(f);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        printf("thread %d: %.9f %016llx\n", i, result[i], (unsigned long long)mix[i]);
    }
    printf("done %d\n", STEPS);
    return 0;
}
