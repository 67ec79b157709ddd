/* pycrs-mtcp-restart: the process's state from the plan: every mapping of the image at its
 * address (MAP_FIXED_NOREPLACE, with its advice and locks), the final protections once the
 * pages are in, the mm fields and auxiliary vector, personality, signal actions (stub.h) and
 * interval timers, and the POSIX timers with their IDs. */
#include "restart.h"

void rs_map_memory(void)
{
    const struct plan *P = rs_plan;
    const struct plan_vma *v = (const void *)((const char *)P + P->vmas);
    for (u64 i = 0; i < P->nvmas; i++, v++) {
        long got = sys(NR_mmap, v->start, v->end - v->start, v->prot_load, v->flags | MAP_FIXED_NOREPLACE,
                       v->fd, v->offset);
        if (got != (long)v->start)
            rs_die("mapping a region of the image at its address", got < 0 ? got : EEXIST);
        for (u64 a = 0; a < v->nadvice && a < 4; a++)
            sys(NR_madvise, v->start, v->end - v->start, v->advice[a]); /* advice only */
        if (v->lock)
            sys(NR_mlock, v->start, v->end - v->start);
    }
}

void rs_protect_memory(void)
{
    const struct plan *P = rs_plan;
    const struct plan_vma *v = (const void *)((const char *)P + P->vmas);
    for (u64 i = 0; i < P->nvmas; i++, v++)
        if (v->prot != v->prot_load)
            rs_must(sys(NR_mprotect, v->start, v->end - v->start, v->prot), "mprotect");
}

/* mm fields and auxv; the executable is left to the restored kernel (kept in r for it), as the
 * kernel will not swap it while this program's file is mapped */
void rs_process_state(struct mtcp_resume *r)
{
    const struct plan *P = rs_plan;
    u64 *mm = r->mm_map; /* struct prctl_mm_map: 11 fields, auxv, auxv_size and exe_fd */
    for (int i = 0; i < 11; i++)
        mm[i] = P->mm[i];
    if (P->auxv_len > sizeof r->auxv)
        rs_die("the image's auxiliary vector is too long", EINVAL);
    memcpy(r->auxv, (const char *)P + P->auxv, P->auxv_len);
    mm[11] = (u64)r->auxv;
    mm[12] = P->auxv_len | (0xffffffffULL << 32);
    rs_must(sys(NR_prctl, PR_SET_MM, PR_SET_MM_MAP, mm, sizeof r->mm_map, 0),
            "prctl(PR_SET_MM_MAP)");
    sys(NR_personality, P->personality);
    rs_must(stub_set_sigactions((const void *)((const char *)P + P->sigactions)),
            "restoring signal actions (rt_sigaction)");
    const i64 *it = (const void *)((const char *)P + P->itimers);
    for (int w = 0; w < 3; w++, it += 4)
        if (it[2] || it[3])
            rs_must(sys(NR_setitimer, w, it, 0), "setitimer");
}

void rs_posix_timers(void)
{
    const struct plan *P = rs_plan;
    if (!P->ntimers)
        return;
    int by_id = sys(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0) == 0;
    const struct plan_timer *t = (const void *)((const char *)P + P->timers);
    for (u64 i = 0; i < P->ntimers; i++, t++) {
        u64 sev[8] = {0};
        sev[0] = (u64)t->value;
        sev[1] = (u64)(uint32_t)t->signo | (u64)(uint32_t)t->notify << 32;
        sev[2] = t->notify == 4 ? (u64)(uint32_t)t->target : 0;
        int id = -1;
        rs_must(sys(NR_timer_create, t->clockid, sev, &id), "timer_create");
        if (id != t->id)
            rs_die(by_id ? "a POSIX timer came back with another ID"
                      : "a POSIX timer came back with another ID (this kernel cannot choose timer IDs)",
                EEXIST);
        if (t->remaining[0] || t->remaining[1]) {
            i64 spec[4] = {t->interval[0], t->interval[1], t->remaining[0], t->remaining[1]};
            rs_must(sys(NR_timer_settime, id, 0, spec, 0), "timer_settime");
        }
    }
    if (by_id)
        sys(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
}
