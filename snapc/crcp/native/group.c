/* group.c: groups, kept by the layer as lists of world ranks (handles.h). A group is an ordered
 * set of processes and nothing else: the layer needs no real group to keep one, and nothing to
 * make again after a rebuild. A call that takes a group gets a real one made for it from the
 * world group of this incarnation (group_in, freed after the call by group_done); a group MPI
 * returns (MPI_Comm_group, MPI_Group_union, ...) becomes the layer's (group_got). A group with
 * processes outside the world (a spawned job's) keeps its real group; the layer cannot make it
 * again, and says so at checkpoint time. */
#include "layer.h"

static struct table GT = {.size = sizeof(struct vgroup)};
#define G(i) ENTRY(GT, struct vgroup, i)
static MPI_Group world_g = MPI_GROUP_NULL;

MPI_Group world_group(void)
{
    if (world_g == MPI_GROUP_NULL && PMPI_Comm_group(C[0].r, &world_g)) world_g = MPI_GROUP_NULL;
    return world_g;
}
void group_teardown(void)
{
    if (world_g != MPI_GROUP_NULL) PMPI_Group_free(&world_g);
    world_g = MPI_GROUP_NULL;
}

int *group_ranks(MPI_Group r, int *n)
{
    if (PMPI_Group_size(r, n)) return NULL;
    int *in = malloc((*n + 1) * sizeof *in), *out = malloc((*n + 1) * sizeof *out);
    if (!in || !out) { free(in); free(out); return NULL; }
    for (int i = 0; i < *n; i++) in[i] = i;
    int rc = PMPI_Group_translate_ranks(r, *n, in, world_group(), out);
    free(in);
    for (int i = 0; i < *n && !rc; i++)
        if (out[i] == MPI_UNDEFINED) rc = -1;
    if (rc) { free(out); return NULL; }
    return out;
}

int group_of_ranks(const int *wr, int n, MPI_Group *out)
{
    MPI_Group w = world_group();
    if (w == MPI_GROUP_NULL) return MPI_ERR_GROUP;
    return PMPI_Group_incl(w, n, wr, out);
}

static int slot_of(MPI_Group v)
{
    int s = layer_slot((unsigned)v, (unsigned)MPI_GROUP_NULL);
    return (s >= 0 && s < GT.n && G(s)->used) ? s : -1;
}

int group_in(MPI_Group v, MPI_Group *r)
{
    if (v == MPI_GROUP_EMPTY) { *r = MPI_GROUP_EMPTY; return MPI_SUCCESS; }
    int s = slot_of(v);
    if (s < 0) { *r = MPI_GROUP_NULL; return MPI_ERR_GROUP; }
    if (G(s)->foreign != MPI_GROUP_NULL) return PMPI_Group_union(G(s)->foreign, MPI_GROUP_EMPTY, r);
    return group_of_ranks(G(s)->wr, G(s)->n, r);
}

void group_done(MPI_Group *r)
{
    if (*r != MPI_GROUP_NULL && *r != MPI_GROUP_EMPTY) PMPI_Group_free(r);
    *r = MPI_GROUP_NULL;
}

static MPI_Group group_new(int *wr, int n, MPI_Group foreign)
{
    int s = table_add(&GT);
    G(s)->refs = 1;
    G(s)->wr = wr;
    G(s)->n = n;
    G(s)->foreign = foreign;
    return LAYER_HANDLE(MPI_GROUP_NULL, s);
}

MPI_Group group_got(MPI_Group r)
{
    if (r == MPI_GROUP_NULL || r == MPI_GROUP_EMPTY) return r;
    int n = 0;
    int *wr = group_ranks(r, &n);
    if (!wr) return group_new(NULL, 0, r);
    PMPI_Group_free(&r);
    return group_new(wr, n, MPI_GROUP_NULL);
}

/* one more reference to a group (a window's epoch keeps the group it was opened with) */
void group_ref(MPI_Group v)
{
    int s = slot_of(v);
    if (s >= 0) G(s)->refs++;
}

EXPORT int MPI_Group_free(MPI_Group *g)
{
    enter();
    int rc = MPI_SUCCESS, s = slot_of(*g);
    if (*g == MPI_GROUP_EMPTY) rc = PMPI_Group_free(g);
    else if (s < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_GROUP, "MPI_Group_free");
    else {
        if (--G(s)->refs == 0) {
            free(G(s)->wr);
            if (G(s)->foreign != MPI_GROUP_NULL) PMPI_Group_free(&G(s)->foreign);
            table_del(&GT, s);
        }
        *g = MPI_GROUP_NULL;
    }
    leave();
    return rc;
}

const char *group_refusal(void)
{
    for (int s = 0; s < GT.n; s++)
        if (G(s)->used && G(s)->foreign != MPI_GROUP_NULL)
            return "a group with processes outside this job (spawned or connected) is live";
    return NULL;
}

/* ---- the group operations, on lists of world ranks (MPICH's would mix its own MPI_GROUP_EMPTY,
 * which belongs to no session, with the layer's session's groups, and assert) ---- */
struct glist { int n; const int *wr; int foreign; };
static int glist_of(MPI_Group v, struct glist *l)
{
    l->n = 0; l->wr = NULL; l->foreign = 0;
    if (v == MPI_GROUP_EMPTY) return MPI_SUCCESS;
    int s = slot_of(v);
    if (s < 0) return MPI_ERR_GROUP;
    if (G(s)->foreign != MPI_GROUP_NULL) { l->foreign = 1; return MPI_SUCCESS; }
    l->n = G(s)->n; l->wr = G(s)->wr;
    return MPI_SUCCESS;
}
static int position(const struct glist *l, int w)
{
    for (int i = 0; i < l->n; i++) if (l->wr[i] == w) return i;
    return -1;
}
/* a new group of the world ranks wr[0..n) (taken over); none: MPI_GROUP_EMPTY */
static MPI_Group made_of(int *wr, int n)
{
    if (n == 0) { free(wr); return MPI_GROUP_EMPTY; }
    return group_new(wr, n, MPI_GROUP_NULL);
}
/* a foreign operand: MPICH does the operation on real groups */
#define FOREIGN2(a, b, call) do { \
        MPI_Group ra = MPI_GROUP_NULL, rb = MPI_GROUP_NULL, out = MPI_GROUP_NULL; \
        if (!(rc = group_in(a, &ra)) && !(rc = group_in(b, &rb)) && !(rc = (call))) *newgroup = group_got(out); \
        group_done(&ra); group_done(&rb); \
    } while (0)
#define GROUP_BEGIN(fn) enter(); int rc = MPI_SUCCESS; const char *fn_ = fn;
#define GROUP_END() if (rc) rc = raise_error(OBJ_NONE, -1, rc, fn_); leave(); return rc;

EXPORT int MPI_Group_size(MPI_Group g, int *size)
{
    GROUP_BEGIN("MPI_Group_size");
    struct glist l;
    if (!(rc = glist_of(g, &l))) {
        if (l.foreign) rc = PMPI_Group_size(G(slot_of(g))->foreign, size);
        else *size = l.n;
    }
    GROUP_END();
}
EXPORT int MPI_Group_rank(MPI_Group g, int *rank)
{
    GROUP_BEGIN("MPI_Group_rank");
    struct glist l;
    if (!(rc = glist_of(g, &l))) {
        if (l.foreign) rc = PMPI_Group_rank(G(slot_of(g))->foreign, rank);
        else { int p = position(&l, C[0].rank); *rank = p < 0 ? MPI_UNDEFINED : p; }
    }
    GROUP_END();
}
EXPORT int MPI_Group_translate_ranks(MPI_Group g1, int n, const int ranks1[], MPI_Group g2, int ranks2[])
{
    GROUP_BEGIN("MPI_Group_translate_ranks");
    struct glist a, b;
    if ((rc = glist_of(g1, &a)) || (rc = glist_of(g2, &b))) {}
    else if (n < 0) rc = MPI_ERR_ARG;
    else if (a.foreign || b.foreign) {
        MPI_Group ra = MPI_GROUP_NULL, rb = MPI_GROUP_NULL;
        if (!(rc = group_in(g1, &ra)) && !(rc = group_in(g2, &rb))) rc = PMPI_Group_translate_ranks(ra, n, ranks1, rb, ranks2);
        group_done(&ra); group_done(&rb);
    } else {
        for (int i = 0; i < n && !rc; i++)
            if ((ranks1[i] < 0 && ranks1[i] != MPI_PROC_NULL) || ranks1[i] >= a.n) rc = MPI_ERR_RANK;
        for (int i = 0; i < n && !rc; i++) {
            if (ranks1[i] == MPI_PROC_NULL) { ranks2[i] = MPI_PROC_NULL; continue; }
            int p = position(&b, a.wr[ranks1[i]]);
            ranks2[i] = p < 0 ? MPI_UNDEFINED : p;
        }
    }
    GROUP_END();
}
EXPORT int MPI_Group_compare(MPI_Group g1, MPI_Group g2, int *result)
{
    GROUP_BEGIN("MPI_Group_compare");
    struct glist a, b;
    if ((rc = glist_of(g1, &a)) || (rc = glist_of(g2, &b))) {}
    else if (a.foreign || b.foreign) {
        MPI_Group ra = MPI_GROUP_NULL, rb = MPI_GROUP_NULL;
        if (!(rc = group_in(g1, &ra)) && !(rc = group_in(g2, &rb))) rc = PMPI_Group_compare(ra, rb, result);
        group_done(&ra); group_done(&rb);
    } else if (a.n != b.n) *result = MPI_UNEQUAL;
    else {
        int same = 1, similar = 1;
        for (int i = 0; i < a.n; i++) {
            same &= a.wr[i] == b.wr[i];
            similar &= position(&b, a.wr[i]) >= 0;
        }
        *result = same ? MPI_IDENT : similar ? MPI_SIMILAR : MPI_UNEQUAL;
    }
    GROUP_END();
}
/* union (a, then what of b is not in a), intersection (a's that are in b), difference */
enum setop { S_UNION, S_INTERSECTION, S_DIFFERENCE };
static int setop(MPI_Group g1, MPI_Group g2, MPI_Group *newgroup, int op)
{
    struct glist a, b;
    int rc;
    if ((rc = glist_of(g1, &a)) || (rc = glist_of(g2, &b))) return rc;
    if (a.foreign || b.foreign) {
        FOREIGN2(g1, g2, op == S_UNION ? PMPI_Group_union(ra, rb, &out) : op == S_INTERSECTION ?
                 PMPI_Group_intersection(ra, rb, &out) : PMPI_Group_difference(ra, rb, &out));
        return rc;
    }
    int *wr = malloc((a.n + b.n + 1) * sizeof *wr), n = 0;
    if (!wr) return MPI_ERR_NO_MEM;
    for (int i = 0; i < a.n; i++) {
        int in_b = position(&b, a.wr[i]) >= 0;
        if (op == S_UNION || (op == S_INTERSECTION) == in_b) wr[n++] = a.wr[i];
    }
    if (op == S_UNION)
        for (int i = 0; i < b.n; i++) if (position(&a, b.wr[i]) < 0) wr[n++] = b.wr[i];
    *newgroup = made_of(wr, n);
    return MPI_SUCCESS;
}
EXPORT int MPI_Group_union(MPI_Group g1, MPI_Group g2, MPI_Group *newgroup)
{ GROUP_BEGIN("MPI_Group_union"); rc = setop(g1, g2, newgroup, S_UNION); GROUP_END(); }
EXPORT int MPI_Group_intersection(MPI_Group g1, MPI_Group g2, MPI_Group *newgroup)
{ GROUP_BEGIN("MPI_Group_intersection"); rc = setop(g1, g2, newgroup, S_INTERSECTION); GROUP_END(); }
EXPORT int MPI_Group_difference(MPI_Group g1, MPI_Group g2, MPI_Group *newgroup)
{ GROUP_BEGIN("MPI_Group_difference"); rc = setop(g1, g2, newgroup, S_DIFFERENCE); GROUP_END(); }

/* ranks[0..n) valid in a group of size `size` and distinct */
static int valid_ranks(const int *ranks, int n, int size)
{
    if (n < 0 || n > size) return MPI_ERR_ARG;
    for (int i = 0; i < n; i++) {
        if (ranks[i] < 0 || ranks[i] >= size) return MPI_ERR_RANK;
        for (int j = 0; j < i; j++) if (ranks[j] == ranks[i]) return MPI_ERR_RANK;
    }
    return MPI_SUCCESS;
}
/* the ranks a list of (first, last, stride) triplets names, each valid and named once */
static int range_ranks(int n, int ranges[][3], int size, int **out, int *count)
{
    int cap = 0;
    for (int i = 0; i < n; i++) {
        int f = ranges[i][0], l = ranges[i][1], s = ranges[i][2];
        if (s == 0) return MPI_ERR_ARG;
        if (f < 0 || f >= size || l < 0 || l >= size) return MPI_ERR_RANK;
        if ((s > 0 && f > l) || (s < 0 && f < l)) continue;
        cap += (l - f) / s + 1;
    }
    int *r = malloc((cap + 1) * sizeof *r), k = 0;
    if (!r) return MPI_ERR_NO_MEM;
    for (int i = 0; i < n; i++) {
        int f = ranges[i][0], l = ranges[i][1], s = ranges[i][2];
        for (int x = f; s > 0 ? x <= l : x >= l; x += s) r[k++] = x;
    }
    int rc = valid_ranks(r, k, size);
    if (rc) { free(r); return rc; }
    *out = r;
    *count = k;
    return MPI_SUCCESS;
}
static int incl_excl(MPI_Group g, int n, const int *ranks, MPI_Group *newgroup, int excl)
{
    struct glist a;
    int rc = glist_of(g, &a);
    if (rc) return rc;
    if (a.foreign) {
        FOREIGN2(g, MPI_GROUP_EMPTY, excl ? PMPI_Group_excl(ra, n, ranks, &out) : PMPI_Group_incl(ra, n, ranks, &out));
        return rc;
    }
    if ((rc = valid_ranks(ranks, n, a.n))) return rc;
    int *wr = malloc((a.n + 1) * sizeof *wr), k = 0;
    if (!wr) return MPI_ERR_NO_MEM;
    if (!excl) for (int i = 0; i < n; i++) wr[k++] = a.wr[ranks[i]];
    else
        for (int i = 0; i < a.n; i++) {
            int out = 0;
            for (int j = 0; j < n; j++) out |= ranks[j] == i;
            if (!out) wr[k++] = a.wr[i];
        }
    *newgroup = made_of(wr, k);
    return MPI_SUCCESS;
}
EXPORT int MPI_Group_incl(MPI_Group g, int n, const int ranks[], MPI_Group *newgroup)
{ GROUP_BEGIN("MPI_Group_incl"); rc = incl_excl(g, n, ranks, newgroup, 0); GROUP_END(); }
EXPORT int MPI_Group_excl(MPI_Group g, int n, const int ranks[], MPI_Group *newgroup)
{ GROUP_BEGIN("MPI_Group_excl"); rc = incl_excl(g, n, ranks, newgroup, 1); GROUP_END(); }
static int range(MPI_Group g, int n, int ranges[][3], MPI_Group *newgroup, int excl)
{
    struct glist a;
    int rc = glist_of(g, &a), *r = NULL, k = 0;
    if (rc) return rc;
    if (a.foreign) {
        FOREIGN2(g, MPI_GROUP_EMPTY, excl ? PMPI_Group_range_excl(ra, n, ranges, &out) : PMPI_Group_range_incl(ra, n, ranges, &out));
        return rc;
    }
    if (n < 0) return MPI_ERR_ARG;
    if ((rc = range_ranks(n, ranges, a.n, &r, &k))) return rc;
    rc = incl_excl(g, k, r, newgroup, excl);
    free(r);
    return rc;
}
EXPORT int MPI_Group_range_incl(MPI_Group g, int n, int ranges[][3], MPI_Group *newgroup)
{ GROUP_BEGIN("MPI_Group_range_incl"); rc = range(g, n, ranges, newgroup, 0); GROUP_END(); }
EXPORT int MPI_Group_range_excl(MPI_Group g, int n, int ranges[][3], MPI_Group *newgroup)
{ GROUP_BEGIN("MPI_Group_range_excl"); rc = range(g, n, ranges, newgroup, 1); GROUP_END(); }
