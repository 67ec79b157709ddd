/* request.c: tracked requests (handles.h). Every request a wrapped call makes is kept here
 * under a handle of the layer's (made from its slot), its real one renewed when it is posted
 * again after a rebuild; the layer tests it, keeps its status until the application asks, and
 * counts what it completes. Persistent requests (point to point, collective, partitioned) keep
 * the record of their init (record.c) and are made again after a rebuild, inactive, then started
 * again if they were started and not complete. Generalized requests are the layer's alone. */
#include "layer.h"

struct treq *T;
int nT, liveT;
static int capT;

int treq_new(int kind, int comm, MPI_Request real)
{
    int k = 0;
    while (k < nT && T[k].used) k++;
    if (k == nT) {
        if (nT == capT) {
            capT = capT ? 2 * capT : 256;
            T = realloc(T, capT * sizeof *T);
            if (!T) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
        }
        nT++;
    }
    memset(&T[k], 0, sizeof *T);
    T[k].used = 1; T[k].kind = kind; T[k].comm = comm;
    T[k].real = real;
    T[k].app = LAYER_HANDLE(MPI_REQUEST_NULL, k);
    T[k].newcomm = T[k].partner = -1;
    T[k].type = MPI_DATATYPE_NULL;
    liveT++;
    return k;
}

void treq_free(int k)
{
    if (T[k].rec) rec_forget(T[k].rec);
    if (T[k].type != MPI_DATATYPE_NULL) type_hold(T[k].type, -1);
    if (T[k].ownbuf) free(T[k].buf);
    if (T[k].freed) nfreed--;
    T[k].used = 0;
    liveT--;
    while (nT && !T[nT - 1].used) nT--;
}

MPI_Request request_made(int kind, int ci, MPI_Request real, struct rec *rec, const char *fn)
{
    int k = treq_new(kind, ci, real);
    T[k].made_by = fn;
    T[k].rec = rec;
    if (rec) { rec->kind = REC_REQUEST; rec->slot = k; }
    if (kind == RQ_PERSIST || kind == RQ_PCOLL || kind == RQ_PART) T[k].done = 1; /* inactive */
    return T[k].app;
}
/* a persistent point-to-point request: its peer (counted at each start) and, for a receive, what
 * a message held by the layer is delivered into */
void request_p2p(MPI_Request app, int recv, int peer, int tag, void *buf, MPI_Count count, MPI_Datatype type)
{
    int k = treq_find(app);
    if (k < 0) return;
    T[k].precv = recv;
    T[k].peer = peer; T[k].tag = tag;
    T[k].buf = buf; T[k].count = count; T[k].type = type;
    type_hold(type, 1);
}

int request_in(MPI_Request v, MPI_Request *r)
{
    int k = treq_find(v);
    if (k < 0) { *r = MPI_REQUEST_NULL; return MPI_ERR_REQUEST; }
    *r = T[k].real;
    return MPI_SUCCESS;
}

int persistent(int k) { return T[k].kind == RQ_PERSIST || T[k].kind == RQ_PCOLL || T[k].kind == RQ_PART; }

void completed(int k, const MPI_Status *st)
{
    T[k].done = 1;
    T[k].st = *st;
    if (!persistent(k)) T[k].real = MPI_REQUEST_NULL;
    int ci = T[k].comm, cancelled = T[k].cancelling && status_cancelled(st);
    T[k].cancelling = 0;
    if (T[k].kind == RQ_RECV || T[k].kind == RQ_SENDRECV || (T[k].kind == RQ_PERSIST && T[k].precv)) {
        if (!cancelled) count_recv(ci, st);
    } else if (is_send(k) && cancelled && ci >= 0 && T[k].peer >= 0 &&
               T[k].peer < (C[ci].inter ? C[ci].rsize : C[ci].size) && C[ci].sent[T[k].peer])
        C[ci].sent[T[k].peer]--; /* never to arrive: the peer's drain must not wait for it */
    else if ((T[k].kind == RQ_COLL || T[k].kind == RQ_PCOLL) && T[k].comm >= 0) C[T[k].comm].completed++;
    if (T[k].newcomm >= 0) comm_finish(T[k].newcomm);
}
/* test one tracked request (gate held): 1 when it is complete (an inactive persistent one is) */
int poll_one(int k, int *rc)
{
    if (T[k].done) return 1;
    if (T[k].kind == RQ_GREQ) return 0;
    if (T[k].kind == RQ_SENDRECV) {
        int p = T[k].partner, e = MPI_SUCCESS;
        int got = poll_one(p, &e) & poll_one_plain(k, &e);
        if (e) { if (rc) *rc = e; return 1; }
        return got;
    }
    return poll_one_plain(k, rc);
}
int poll_one_plain(int k, int *rc)
{
    if (T[k].done) return 1;
    int flag = 0;
    MPI_Status st = FRESH_STATUS;
    if (T[k].real == MPI_REQUEST_NULL) return 0; /* a receive waiting to be posted again */
    int e = PMPI_Test(&T[k].real, &flag, &st);
    if (e) { if (rc) *rc = e; return 1; }
    if (flag) completed(k, &st);
    return flag;
}

/* ---- teardown and rebuild ---- */
/* what the drain left: every request that is not a receive to post again has completed */
void request_teardown(void)
{
    for (int k = 0; k < nT; k++) {
        if (!T[k].used) continue;
        if (persistent(k) && T[k].real != MPI_REQUEST_NULL) PMPI_Request_free(&T[k].real);
        T[k].real = MPI_REQUEST_NULL;
    }
}
/* after the rebuild: receives taken back at the cut posted again (a message the layer holds
 * first) */
int request_replay(void)
{
    int rc = MPI_SUCCESS;
    for (int k = 0; k < nT && !rc; k++)
        if (T[k].used && T[k].repost) { T[k].repost = 0; rc = post_recv(k); }
    return rc;
}
int request_remake(struct rec *r)
{
    MPI_Request made = MPI_REQUEST_NULL;
    int rc = r->replay(r, &made);
    if (!rc) T[r->slot].real = made;
    return rc;
}
const char *request_refusal(void)
{
    for (int k = 0; k < nT; k++)
        if (T[k].used && T[k].kind == RQ_PART && T[k].active && !T[k].done)
            return "a partitioned request is active (started, not complete): its partitions cannot be completed "
                   "for the application";
    return NULL;
}

/* ---- generalized requests: the layer's alone ---- */
EXPORT int MPI_Grequest_start(MPI_Grequest_query_function *query, MPI_Grequest_free_function *gfree,
                              MPI_Grequest_cancel_function *gcancel, void *extra, MPI_Request *req)
{
    enter();
    int k = treq_new(RQ_GREQ, -1, MPI_REQUEST_NULL);
    T[k].query = query; T[k].gfree = gfree; T[k].gcancel = gcancel; T[k].extra = extra;
    T[k].made_by = "MPI_Grequest_start";
    *req = T[k].app;
    leave();
    return MPI_SUCCESS;
}
EXPORT int MPI_Grequest_complete(MPI_Request req)
{
    enter();
    int k = treq_find(req), rc = MPI_SUCCESS;
    if (k < 0 || T[k].kind != RQ_GREQ) rc = raise_error(OBJ_NONE, -1, MPI_ERR_REQUEST, "MPI_Grequest_complete");
    else {
        T[k].done = 1;
        if (T[k].internal) { /* freed by the application before: it goes now */
            if (T[k].gfree) T[k].gfree(T[k].extra);
            treq_free(k);
        }
    }
    leave();
    return rc;
}
/* a complete generalized request's status (its query function), then its free function */
int greq_finish(int k, MPI_Status *st)
{
    MPI_Status mine = FRESH_STATUS;
    int rc = T[k].query ? T[k].query(T[k].extra, &mine) : MPI_SUCCESS;
    if (T[k].gfree) {
        int e = T[k].gfree(T[k].extra);
        if (!rc) rc = e;
    }
    give_status(st, &mine);
    return rc;
}
