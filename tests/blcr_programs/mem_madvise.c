/* madvise flags: an 8-page anonymous region, each page with its own pattern, advised in pairs
 * of pages: MADV_DONTFORK (VmFlags "dc"), MADV_DONTDUMP ("dd"), MADV_WIPEONFORK ("wf"), and
 * MADV_HUGEPAGE ("hg") / MADV_NOHUGEPAGE ("nh") on one page each where the kernel has
 * transparent huge pages. After the restart every page shows in /proc/self/smaps exactly its
 * advice (and none of the others), holds its data, and a forked child sees the wipe-on-fork
 * pages zeroed. */
#include "common.h"

#include <sys/mman.h>
#include <sys/wait.h>

#define PG 4096
#define NP 8

static uint8_t *region;
static const char *const want[NP] = {"dc", "dc", "dd", "dd", "wf", "wf", "hg", "nh"};
static int thp;

/* The VmFlags line of the smaps entry holding `addr` (empty if none). */
static void vmflags(const void *addr, char *out, size_t n)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int in = 0;
    out[0] = 0;
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = (unsigned long)addr >= lo && (unsigned long)addr < hi;
        else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            size_t len = strcspn(line + 8, "\n");
            len = len < n - 1 ? len : n - 1;
            memcpy(out, line + 8, len);
            out[len] = 0;
            break;
        }
    }
    fclose(f);
}

static int has(const char *flags, const char *f)
{
    char pat[8];
    snprintf(pat, sizeof pat, " %s", f);
    const char *s = strstr(flags, pat);
    return s != NULL && (s[3] == ' ' || s[3] == '\n' || s[3] == 0);
}

int main(void)
{
    static const int advice[] = {MADV_DONTFORK, MADV_DONTDUMP, MADV_WIPEONFORK};
    common_init();
    thp = access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
    region = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED)
        DIE("mmap");
    for (int i = 0; i < NP; i++)
        fill_pattern(region + i * PG, PG, 100 + i);
    for (int i = 0; i < 3; i++)
        if (madvise(region + 2 * i * PG, 2 * PG, advice[i]) != 0)
            DIE("madvise");
    if (thp && (madvise(region + 6 * PG, PG, MADV_HUGEPAGE) != 0 ||
                madvise(region + 7 * PG, PG, MADV_NOHUGEPAGE) != 0))
        DIE("madvise huge pages");

    if (sabotage() && madvise(region, PG, MADV_DOFORK) != 0)
        DIE("madvise");
    ready();
    wait_term();

    static const char *const all[] = {"dc", "dd", "wf", "hg", "nh"};
    char flags[256];
    for (int i = 0; i < NP; i++) {
        if (!thp && i >= 6)
            break;
        vmflags(region + i * PG, flags, sizeof flags);
        for (int k = 0; k < 5; k++)
            CHECK(has(flags, all[k]) == !strcmp(all[k], want[i]),
                  "page %d: VmFlags%s %s %s", i, flags[0] ? flags : " (none)",
                  strcmp(all[k], want[i]) ? "has" : "lacks", all[k]);
        CHECK(check_pattern(region + i * PG, PG, 100 + i) < 0, "page %d: data changed", i);
    }
    pid_t child = fork();
    if (child == 0) {
        int zero = 1;
        for (int i = 4 * PG; i < 6 * PG; i++)
            zero &= region[i] == 0;
        _exit(zero && check_pattern(region + 2 * PG, PG, 102) < 0 ? 0 : 1);
    }
    int st = 0;
    CHECK(child > 0 && waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "a forked child does not see the wipe-on-fork pages zeroed (status %#x)", st);
    return finish();
}
