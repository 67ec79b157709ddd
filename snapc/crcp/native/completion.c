/* completion.c: MPI_Test, MPI_Wait and their -all/-any/-some forms, request status, cancel and
 * free, and the start of persistent requests. Every request the application holds is tracked
 * (request.c); it completes in the layer (poll_one), which keeps its status until the
 * application asks. A persistent request stays, inactive, when it completes; a generalized one
 * completes when the application says so. */
#include "layer.h"

static void empty_status(MPI_Status *st)
{
    if (st == MPI_STATUS_IGNORE) return;
    memset(st, 0, sizeof *st);
    st->MPI_SOURCE = MPI_ANY_SOURCE;
    st->MPI_TAG = MPI_ANY_TAG;
    st->MPI_ERROR = MPI_SUCCESS;
}
static int raise_request(int k, int rc, const char *fn)
{
    int ci = k >= 0 ? T[k].comm : -1;
    return raise_error(ci >= 0 && C[ci].used && C[ci].app ? OBJ_COMM : OBJ_NONE, ci, rc, fn);
}

/* deliver the status of complete request k and release it (persistent: inactive) */
static int finish(int k, MPI_Request *r, MPI_Status *st)
{
    int rc = MPI_SUCCESS;
    if (T[k].kind == RQ_GREQ) {
        rc = greq_finish(k, st);
        treq_free(k);
        *r = MPI_REQUEST_NULL;
        return rc;
    }
    int recv = T[k].kind == RQ_RECV || T[k].kind == RQ_SENDRECV || T[k].kind == RQ_MRECV ||
               (T[k].kind == RQ_PERSIST && T[k].precv);
    if (recv && T[k].st.MPI_ERROR == MPI_ERR_TRUNCATE) rc = MPI_ERR_TRUNCATE;
    if (persistent(k) && !T[k].active) { empty_status(st); return MPI_SUCCESS; }
    give_status(st, &T[k].st);
    if (persistent(k)) {
        T[k].active = 0;
        empty_status(&T[k].st);
    } else {
        if (T[k].partner >= 0) treq_free(T[k].partner);
        treq_free(k);
        *r = MPI_REQUEST_NULL;
    }
    return rc;
}
static int test_one(MPI_Request *r, int *flag, MPI_Status *st)
{
    if (*r == MPI_REQUEST_NULL) { *flag = 1; empty_status(st); return MPI_SUCCESS; }
    int k = treq_find(*r), rc = MPI_SUCCESS;
    if (k < 0) { *flag = 0; return MPI_ERR_REQUEST; }
    *flag = poll_one(k, &rc);
    if (rc) return rc;
    if (*flag) rc = finish(k, r, st);
    return rc;
}
EXPORT int MPI_Test(MPI_Request *r, int *flag, MPI_Status *st)
{
    enter();
    int k = treq_find(*r);
    int rc = test_one(r, flag, st);
    if (rc) rc = raise_request(k, rc, "MPI_Test");
    leave();
    return rc;
}
EXPORT int MPI_Wait(MPI_Request *r, MPI_Status *st)
{
    enter();
    int flag = 0, rc, k = treq_find(*r);
    while (!(rc = test_one(r, &flag, st)) && !flag) loop_pause();
    if (rc) rc = raise_request(k, rc, "MPI_Wait");
    leave();
    return rc;
}
static inline MPI_Status *nth(MPI_Status *sts, int i) { return sts == MPI_STATUSES_IGNORE ? MPI_STATUS_IGNORE : &sts[i]; }
/* whether request r is complete, without releasing it */
static int peek_one(MPI_Request r, int *flag)
{
    if (r == MPI_REQUEST_NULL) { *flag = 1; return MPI_SUCCESS; }
    int k = treq_find(r);
    if (k < 0) return MPI_ERR_REQUEST;
    int rc = MPI_SUCCESS;
    *flag = poll_one(k, &rc);
    return rc;
}
static int testall(int n, MPI_Request *rs, int *flag, MPI_Status *sts)
{
    int rc = MPI_SUCCESS;
    *flag = 1;
    for (int i = 0; i < n && !rc; i++) {
        int f = 0;
        rc = peek_one(rs[i], &f);
        *flag &= f;
    }
    if (rc || !*flag) return rc;
    for (int i = 0; i < n; i++) {
        int f = 0;
        int e = test_one(&rs[i], &f, nth(sts, i));
        if (e && !rc) rc = e;
    }
    return rc;
}
EXPORT int MPI_Testall(int n, MPI_Request *rs, int *flag, MPI_Status *sts)
{
    enter();
    int rc = testall(n, rs, flag, sts);
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Testall");
    leave();
    return rc;
}
EXPORT int MPI_Waitall(int n, MPI_Request *rs, MPI_Status *sts)
{
    enter();
    int flag = 0, rc;
    while (!(rc = testall(n, rs, &flag, sts)) && !flag) loop_pause();
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Waitall");
    leave();
    return rc;
}
static int active_request(MPI_Request r)
{
    if (r == MPI_REQUEST_NULL) return 0;
    int k = treq_find(r);
    return k < 0 || !persistent(k) || T[k].active;
}
static int testany(int n, MPI_Request *rs, int *index, int *flag, MPI_Status *st)
{
    int active = 0;
    *flag = 0;
    *index = MPI_UNDEFINED;
    for (int i = 0; i < n; i++) {
        if (!active_request(rs[i])) continue;
        active = 1;
        int rc = test_one(&rs[i], flag, st);
        if (rc) { *index = i; return rc; }
        if (*flag) { *index = i; return MPI_SUCCESS; }
    }
    if (!active) { *flag = 1; empty_status(st); }
    return MPI_SUCCESS;
}
EXPORT int MPI_Testany(int n, MPI_Request *rs, int *index, int *flag, MPI_Status *st)
{
    enter();
    int rc = testany(n, rs, index, flag, st);
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Testany");
    leave();
    return rc;
}
EXPORT int MPI_Waitany(int n, MPI_Request *rs, int *index, MPI_Status *st)
{
    enter();
    int flag = 0, rc;
    while (!(rc = testany(n, rs, index, &flag, st)) && !flag) loop_pause();
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Waitany");
    leave();
    return rc;
}
static int testsome(int n, MPI_Request *rs, int *outcount, int *indices, MPI_Status *sts)
{
    int active = 0;
    *outcount = 0;
    for (int i = 0; i < n; i++) {
        if (!active_request(rs[i])) continue;
        active = 1;
        int flag = 0;
        int rc = test_one(&rs[i], &flag, nth(sts, *outcount));
        if (rc) return rc;
        if (flag) indices[(*outcount)++] = i;
    }
    if (!active) *outcount = MPI_UNDEFINED;
    return MPI_SUCCESS;
}
EXPORT int MPI_Testsome(int n, MPI_Request *rs, int *outcount, int *indices, MPI_Status *sts)
{
    enter();
    int rc = testsome(n, rs, outcount, indices, sts);
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Testsome");
    leave();
    return rc;
}
EXPORT int MPI_Waitsome(int n, MPI_Request *rs, int *outcount, int *indices, MPI_Status *sts)
{
    enter();
    int rc;
    while (!(rc = testsome(n, rs, outcount, indices, sts)) && *outcount == 0) loop_pause();
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Waitsome");
    leave();
    return rc;
}

/* ---- status without completion ---- */
static int get_status(MPI_Request r, int *flag, MPI_Status *st)
{
    if (r == MPI_REQUEST_NULL) { *flag = 1; empty_status(st); return MPI_SUCCESS; }
    int k = treq_find(r), rc = MPI_SUCCESS;
    if (k < 0) return MPI_ERR_REQUEST;
    if ((*flag = poll_one(k, &rc)) && !rc) {
        if (T[k].kind == RQ_GREQ) {
            MPI_Status mine = FRESH_STATUS;
            if (T[k].query) rc = T[k].query(T[k].extra, &mine);
            give_status(st, &mine);
        } else if (persistent(k) && !T[k].active) empty_status(st);
        else give_status(st, &T[k].st);
    }
    return rc;
}
EXPORT int MPI_Request_get_status(MPI_Request r, int *flag, MPI_Status *st)
{
    enter();
    int rc = get_status(r, flag, st);
    if (rc) rc = raise_request(treq_find(r), rc, "MPI_Request_get_status");
    leave();
    return rc;
}
EXPORT int MPI_Request_get_status_all(int n, const MPI_Request rs[], int *flag, MPI_Status sts[])
{
    enter();
    int rc = MPI_SUCCESS;
    *flag = 1;
    for (int i = 0; i < n && !rc; i++) { int f = 0; rc = peek_one(rs[i], &f); *flag &= f; }
    for (int i = 0; i < n && !rc && *flag; i++) { int f; rc = get_status(rs[i], &f, nth(sts, i)); }
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Request_get_status_all");
    leave();
    return rc;
}
EXPORT int MPI_Request_get_status_any(int n, const MPI_Request rs[], int *index, int *flag, MPI_Status *st)
{
    enter();
    int rc = MPI_SUCCESS, active = 0;
    *flag = 0;
    *index = MPI_UNDEFINED;
    for (int i = 0; i < n && !rc && !*flag; i++) {
        if (!active_request(rs[i])) continue;
        active = 1;
        if (!(rc = get_status(rs[i], flag, st)) && *flag) *index = i;
    }
    if (!rc && !active) { *flag = 1; empty_status(st); }
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Request_get_status_any");
    leave();
    return rc;
}
EXPORT int MPI_Request_get_status_some(int n, const MPI_Request rs[], int *outcount, int indices[], MPI_Status sts[])
{
    enter();
    int rc = MPI_SUCCESS, active = 0;
    *outcount = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (!active_request(rs[i])) continue;
        active = 1;
        int f = 0;
        if (!(rc = get_status(rs[i], &f, nth(sts, *outcount))) && f) indices[(*outcount)++] = i;
    }
    if (!rc && !active) *outcount = MPI_UNDEFINED;
    if (rc) rc = raise_error(OBJ_NONE, -1, rc, "MPI_Request_get_status_some");
    leave();
    return rc;
}

EXPORT int MPI_Cancel(MPI_Request *r)
{
    enter();
    int k = treq_find(*r), rc = MPI_SUCCESS;
    if (k < 0) rc = MPI_ERR_REQUEST;
    else if (T[k].kind == RQ_GREQ) { if (T[k].gcancel) rc = T[k].gcancel(T[k].extra, T[k].done); }
    else if (!T[k].done && T[k].real != MPI_REQUEST_NULL) {
        rc = PMPI_Cancel(&T[k].real);
        T[k].cancelling = !rc;
        if (!rc && T[k].partner >= 0 && T[T[k].partner].real != MPI_REQUEST_NULL) {
            rc = PMPI_Cancel(&T[T[k].partner].real);
            T[T[k].partner].cancelling = !rc;
        }
    }
    if (rc) rc = raise_request(k, rc, "MPI_Cancel");
    leave();
    return rc;
}
/* Requests the application freed before they completed: tested now and then, and let go once
 * complete, as MPI itself does. Kept for ever, their real requests would pile up in MPICH (one
 * per task of mpi4py.futures, which frees every send), and MPI_Comm_disconnect, which waits
 * until no request uses the communicator, would never return. Tested when as many more have
 * been freed as were left pending at the last test, and before a disconnect. */
int nfreed;
static int reap_at = 16;
int reap_freed(int ci)
{
    int left = 0;
    for (int k = 0; k < nT && nfreed; k++) {
        if (!T[k].used || !T[k].freed || (ci >= 0 && T[k].comm != ci)) continue;
        int rc = MPI_SUCCESS;
        if (!poll_one(k, &rc)) { left++; continue; }
        if (persistent(k) && T[k].real != MPI_REQUEST_NULL) PMPI_Request_free(&T[k].real);
        treq_free(k);
    }
    return left;
}
static void freed_by_app(int k)
{
    T[k].internal = 1;
    T[k].freed = 1;
    if (++nfreed < reap_at) return;
    int left = reap_freed(-1);
    reap_at = nfreed + (left > 16 ? left : 16);
}
EXPORT int MPI_Request_free(MPI_Request *r)
{
    enter();
    int k = treq_find(*r), rc = MPI_SUCCESS;
    if (k < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_REQUEST, "MPI_Request_free");
    else if (T[k].kind == RQ_GREQ) {
        if (T[k].done) { if (T[k].gfree) rc = T[k].gfree(T[k].extra); treq_free(k); }
        else T[k].internal = 1; /* its free function runs when it completes */
        *r = MPI_REQUEST_NULL;
    } else if (persistent(k) && !(T[k].active && !T[k].done)) {
        if (T[k].real != MPI_REQUEST_NULL) rc = PMPI_Request_free(&T[k].real);
        treq_free(k);
        *r = MPI_REQUEST_NULL;
    } else {
        /* the request completes on its own; the layer keeps it until then (a freed receive
         * still counts, and a cut still waits for it) */
        freed_by_app(k);
        *r = MPI_REQUEST_NULL;
    }
    leave();
    return rc;
}

/* ---- persistent requests ---- */
static int start(int k)
{
    int rc = MPI_SUCCESS;
    if (k < 0 || !persistent(k) || (T[k].active && !T[k].done)) return MPI_ERR_REQUEST;
    T[k].done = 0;
    T[k].active = 1;
    empty_status(&T[k].st);
    int ci = T[k].comm;
    switch (T[k].kind) {
    case RQ_PCOLL:
        coll_admit(ci);
        if ((rc = PMPI_Start(&T[k].real))) { C[ci].completed++; T[k].active = 0; T[k].done = 1; }
        return rc;
    case RQ_PERSIST:
        if (T[k].precv) return post_recv(k);
        if (ci >= 0 && T[k].peer >= 0 && T[k].peer < (C[ci].inter ? C[ci].rsize : C[ci].size)) C[ci].sent[T[k].peer]++;
        break;
    }
    if ((rc = PMPI_Start(&T[k].real))) { T[k].active = 0; T[k].done = 1; }
    return rc;
}
EXPORT int MPI_Start(MPI_Request *r)
{
    enter();
    int k = treq_find(*r);
    int rc = start(k);
    if (rc) rc = raise_request(k, rc, "MPI_Start");
    leave();
    return rc;
}
EXPORT int MPI_Startall(int n, MPI_Request rs[])
{
    enter();
    int rc = MPI_SUCCESS, k = -1;
    for (int i = 0; i < n && !rc; i++) rc = start(k = treq_find(rs[i]));
    if (rc) rc = raise_request(k, rc, "MPI_Startall");
    leave();
    return rc;
}
