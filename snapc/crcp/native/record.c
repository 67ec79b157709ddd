/* record.c: the records of constructors (handles.h: struct rec), written by the generated
 * wrappers with a copy of the arguments: datatypes, ops, persistent requests. They are replayed
 * in creation order after a rebuild, so that an object is made again from objects made again
 * before it; a record goes when its object is freed and no other record needs it (datatype.c,
 * op.c, request.c let go of what a record holds). */
#include "layer.h"

static struct rec *first, *last;

void *rec_new(size_t size, int (*replay)(struct rec *, void *), void (*drop)(struct rec *),
              const char *made_by)
{
    struct rec *r = calloc(1, size);
    if (!r) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
    r->replay = replay;
    r->drop = drop;
    r->made_by = made_by;
    r->prev = last;
    if (last) last->next = r; else first = r;
    last = r;
    return r;
}

void *rec_copy(const void *p, size_t n)
{
    void *c = malloc(n ? n : 1);
    if (!c) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
    if (n) memcpy(c, p, n);
    return c;
}

void rec_forget(struct rec *r)
{
    if (!r) return;
    if (r->prev) r->prev->next = r->next; else first = r->next;
    if (r->next) r->next->prev = r->prev; else last = r->prev;
    r->drop(r);
    free(r);
}

/* every record's object made again, in creation order (after the communicators) */
int rec_replay_all(void)
{
    for (struct rec *r = first; r; r = r->next) {
        int rc;
        switch (r->kind) {
        case REC_TYPE: rc = type_remake(r); break;
        case REC_OP: rc = op_remake(r); break;
        case REC_REQUEST: rc = request_remake(r); break;
        default: rc = MPI_ERR_INTERN;
        }
        if (rc) {
            if (verbose) fprintf(stderr, "crcp: making again what %s made: error %d\n", r->made_by, rc);
            return rc;
        }
    }
    type_replayed();
    op_replayed();
    return MPI_SUCCESS;
}
