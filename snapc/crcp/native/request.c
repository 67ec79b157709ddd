/* request.c: tracked requests. Every request a wrapped call makes is kept here under a handle
 * of the layer's (handles.h), its real one renewed when it is posted again after a rebuild; the
 * layer tests it, keeps its status until the application asks, and counts what it completes. */
#include "layer.h"

struct treq *T;
int nT, liveT;
static int capT;
unsigned layer_handles;

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
    T[k].app = T[k].real = real;
    liveT++;
    return k;
}

void treq_free(int k) { T[k].used = 0; liveT--; while (nT && !T[nT - 1].used) nT--; }

void completed(int k, const MPI_Status *st)
{
    T[k].done = 1;
    T[k].st = *st;
    T[k].real = MPI_REQUEST_NULL;
    if (T[k].kind == RQ_RECV) count_recv(T[k].comm, st);
    else if (T[k].kind == RQ_COLL && T[k].comm >= 0) C[T[k].comm].completed++;
}
/* test one tracked request (gate held): 1 when it is complete */
int poll_one(int k, int *rc)
{
    if (T[k].done) return 1;
    int flag = 0;
    MPI_Status st = FRESH_STATUS;
    int e = PMPI_Test(&T[k].real, &flag, &st);
    if (e) { if (rc) *rc = e; return 1; }
    if (flag) completed(k, &st);
    return flag;
}
