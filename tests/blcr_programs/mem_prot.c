/* Memory protections: a 6-page region, each page filled with its own pattern, then mprotect'ed
 * page by page to r--, ---, rw-, r-x, --- and r--. After the restart, /proc/self/maps shows the
 * same protections, the read-only page refuses writes and the PROT_NONE pages refuse reads (both
 * caught as SIGSEGV), and the PROT_NONE pages still hold their data once made readable. Also a
 * thread-stack-like guard: a PROT_NONE page below a read-write area, both mapped at once. */
#include "common.h"

#include <setjmp.h>
#include <sys/mman.h>

#define PG 4096
static const int prots[] = {PROT_READ, PROT_NONE, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC,
                            PROT_NONE, PROT_READ};
static const char *const names[] = {"r--p", "---p", "rw-p", "r-xp", "---p", "r--p"};
#define NP 6

static sigjmp_buf jb;
static volatile sig_atomic_t faulted;

static void on_segv(int sig)
{
    (void)sig;
    faulted = 1;
    siglongjmp(jb, 1);
}

/* 1 if touching p (a write if `write`) faults. */
static int faults(volatile uint8_t *p, int write)
{
    faulted = 0;
    if (sigsetjmp(jb, 1) == 0) {
        if (write)
            *p = 0x5a;
        else
            (void)*p;
    }
    return faulted;
}

int main(void)
{
    char perms[5] = "";
    common_init();
    uint8_t *r = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *guarded = mmap(NULL, 5 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED || guarded == MAP_FAILED)
        DIE("mmap");
    for (int p = 0; p < NP; p++)
        fill_pattern(r + p * PG, PG, 50 + p);
    for (int p = 0; p < NP; p++)
        if (mprotect(r + p * PG, PG, prots[p]) != 0)
            DIE("mprotect");
    if (mprotect(guarded, PG, PROT_NONE) != 0)
        DIE("mprotect guard");
    fill_pattern(guarded + PG, 4 * PG, 60);
    struct sigaction sa = {0};
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, NULL);

    if (sabotage())
        mprotect(r + 4 * PG, PG, PROT_READ);
    ready();
    wait_term();

    for (int p = 0; p < NP; p++) {
        int found = maps_lookup(r + p * PG, perms, NULL, 0);
        CHECK(found && strcmp(perms, names[p]) == 0, "page %d is %s, expected %s", p,
              found ? perms : "unmapped", names[p]);
    }
    CHECK(faults(r, 1), "the read-only page accepts writes");
    CHECK(faults(r + PG, 0), "PROT_NONE page 1 can be read");
    CHECK(faults(r + 4 * PG, 0), "PROT_NONE page 4 can be read");
    CHECK(!faults(r + 2 * PG, 1), "the read-write page refuses writes");
    CHECK(maps_lookup(guarded, perms, NULL, 0) && strcmp(perms, "---p") == 0,
          "the guard page is %s, expected ---p", perms);
    CHECK(faults(guarded + PG - 1, 0), "the guard page can be read");
    CHECK(maps_lookup(guarded + PG, perms, NULL, 0) && strcmp(perms, "rw-p") == 0,
          "the area above the guard page is %s, expected rw-p", perms);
    CHECK(check_pattern(guarded + PG, 4 * PG, 60) < 0, "the area above the guard page changed");

    if (mprotect(r, NP * PG, PROT_READ) != 0)
        DIE("mprotect");
    for (int p = 0; p < NP; p++) {
        if (p == 2)
            continue; /* written above */
        CHECK(check_pattern(r + p * PG, PG, 50 + p) < 0, "page %d (%s) lost its content", p,
              names[p]);
    }
    return finish();
}
