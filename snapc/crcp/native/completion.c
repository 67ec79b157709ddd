/* completion.c: MPI_Test, MPI_Wait and their -all/-any/-some forms, request status, cancel and
 * free. A tracked request completes in the layer (poll_one), which keeps its status until the
 * application asks; an untracked one (made by a call the layer passes through) goes to MPI. */
#include "layer.h"

static int finish(int k, MPI_Request *r, MPI_Status *st)
{
    int truncated = T[k].kind == RQ_RECV && T[k].st.MPI_ERROR == MPI_ERR_TRUNCATE;
    give_status(st, &T[k].st);
    treq_free(k);
    *r = MPI_REQUEST_NULL;
    return truncated ? MPI_ERR_TRUNCATE : MPI_SUCCESS;
}
static int test_one(MPI_Request *r, int *flag, MPI_Status *st)
{
    int k = treq_find(*r), rc = MPI_SUCCESS;
    if (k < 0 || T[k].kind == RQ_REFUSED) {
        rc = PMPI_Test(r, flag, st);
        if (k >= 0 && *flag && *r == MPI_REQUEST_NULL) treq_free(k);
        return rc;
    }
    *flag = poll_one(k, &rc);
    if (rc) return rc;
    if (*flag) rc = finish(k, r, st);
    return rc;
}
EXPORT int MPI_Test(MPI_Request *r, int *flag, MPI_Status *st)
{
    enter();
    int rc = test_one(r, flag, st);
    leave();
    return rc;
}
EXPORT int MPI_Wait(MPI_Request *r, MPI_Status *st)
{
    enter();
    int flag = 0, rc;
    while (!(rc = test_one(r, &flag, st)) && !flag) loop_pause();
    leave();
    return rc;
}
static inline MPI_Status *nth(MPI_Status *sts, int i) { return sts == MPI_STATUSES_IGNORE ? MPI_STATUS_IGNORE : &sts[i]; }
/* complete for the application: whether request i is complete, without freeing it yet */
static int peek_one(MPI_Request r, int *flag)
{
    int k = treq_find(r);
    if (r == MPI_REQUEST_NULL) { *flag = 1; return MPI_SUCCESS; }
    if (k < 0 || T[k].kind == RQ_REFUSED) return PMPI_Request_get_status(r, flag, MPI_STATUS_IGNORE);
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
        if (rs[i] == MPI_REQUEST_NULL) continue;
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
    leave();
    return rc;
}
EXPORT int MPI_Waitall(int n, MPI_Request *rs, MPI_Status *sts)
{
    enter();
    int flag = 0, rc;
    while (!(rc = testall(n, rs, &flag, sts)) && !flag) loop_pause();
    leave();
    return rc;
}
static int testany(int n, MPI_Request *rs, int *index, int *flag, MPI_Status *st)
{
    int active = 0;
    *flag = 0;
    *index = MPI_UNDEFINED;
    for (int i = 0; i < n; i++) {
        if (rs[i] == MPI_REQUEST_NULL) continue;
        active = 1;
        int rc = test_one(&rs[i], flag, st);
        if (rc) return rc;
        if (*flag) { *index = i; return MPI_SUCCESS; }
    }
    if (!active) *flag = 1;
    return MPI_SUCCESS;
}
EXPORT int MPI_Testany(int n, MPI_Request *rs, int *index, int *flag, MPI_Status *st)
{
    enter();
    int rc = testany(n, rs, index, flag, st);
    leave();
    return rc;
}
EXPORT int MPI_Waitany(int n, MPI_Request *rs, int *index, MPI_Status *st)
{
    enter();
    int flag = 0, rc;
    while (!(rc = testany(n, rs, index, &flag, st)) && !flag) loop_pause();
    leave();
    return rc;
}
static int testsome(int n, MPI_Request *rs, int *outcount, int *indices, MPI_Status *sts)
{
    int active = 0;
    *outcount = 0;
    for (int i = 0; i < n; i++) {
        if (rs[i] == MPI_REQUEST_NULL) continue;
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
    leave();
    return rc;
}
EXPORT int MPI_Waitsome(int n, MPI_Request *rs, int *outcount, int *indices, MPI_Status *sts)
{
    enter();
    int rc;
    while (!(rc = testsome(n, rs, outcount, indices, sts)) && *outcount == 0) loop_pause();
    leave();
    return rc;
}
EXPORT int MPI_Request_get_status(MPI_Request r, int *flag, MPI_Status *st)
{
    enter();
    int k = treq_find(r), rc = MPI_SUCCESS;
    if (k < 0 || T[k].kind == RQ_REFUSED) rc = PMPI_Request_get_status(r, flag, st);
    else if ((*flag = poll_one(k, &rc)) && !rc) give_status(st, &T[k].st);
    leave();
    return rc;
}
EXPORT int MPI_Cancel(MPI_Request *r)
{
    enter();
    int k = treq_find(*r), rc = MPI_SUCCESS;
    if (k < 0 || T[k].kind == RQ_REFUSED) rc = PMPI_Cancel(r);
    else if (!T[k].done && T[k].real != MPI_REQUEST_NULL) rc = PMPI_Cancel(&T[k].real);
    leave();
    return rc;
}
EXPORT int MPI_Request_free(MPI_Request *r)
{
    enter();
    int k = treq_find(*r), rc = MPI_SUCCESS;
    if (k < 0) rc = PMPI_Request_free(r);
    else if (T[k].kind == RQ_REFUSED) { rc = PMPI_Request_free(r); treq_free(k); }
    else {
        /* the request completes on its own; the layer keeps it until then (a freed receive
         * still counts, and a cut still waits for it) */
        T[k].internal = 1;
        *r = MPI_REQUEST_NULL;
    }
    leave();
    return rc;
}
