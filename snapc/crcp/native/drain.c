/* drain.c: the bookmark exchange, with the application held at the cut: matched probes
 * received into the layer, the per-peer sent counts exchanged, every message still missing
 * received (posted receives first), the sends completed, the receives still posted cancelled
 * to be posted again after the rebuild. */
#include "layer.h"

int drain(char *err, int errlen)
{
    int rc;
    /* matched probes the application holds: received into the layer now */
    for (int h = 0; h < nH; h++) {
        if (!H[h].used || H[h].stored >= 0 || H[h].real == MPI_MESSAGE_NULL) continue;
        MPI_Count len = status_bytes(&H[h].st);
        char *data = malloc(len ? len : 1);
        MPI_Status st = FRESH_STATUS;
        if (!data) return snprintf(err, errlen, "out of memory"), -1;
        if ((rc = PMPI_Mrecv_c(data, len, MPI_BYTE, &H[h].real, &st))) return mpi_error(rc, err, errlen, "receiving a probed message");
        int m = store_add(-1, H[h].st.MPI_SOURCE, H[h].st.MPI_TAG, data, len);
        H[h].stored = m;
        stat_msgs++; stat_bytes += len;
    }
    /* the bookmark exchange: what every peer sent me on every communicator */
    uint64_t **expect = calloc(ncomm, sizeof *expect);
    MPI_Request *rs = calloc(ncomm, sizeof *rs);
    int nr = 0;
    for (int i = 0; i < ncomm; i++) {
        if (!C[i].live || C[i].shadow == MPI_COMM_NULL) continue;
        expect[i] = calloc(C[i].size, sizeof(uint64_t));
        if ((rc = PMPI_Ialltoall(C[i].sent, 1, MPI_UINT64_T, expect[i], 1, MPI_UINT64_T, C[i].shadow, &rs[nr++])))
            return mpi_error(rc, err, errlen, "exchanging message counts");
    }
    if ((rc = PMPI_Waitall(nr, rs, MPI_STATUSES_IGNORE))) return mpi_error(rc, err, errlen, "exchanging message counts");
    /* receive until every count is met: a posted receive first (MPI matches those first), the
     * rest into the layer, oldest first */
    for (int missing = 1; missing;) {
        missing = 0;
        for (int k = 0; k < nT; k++)
            if (T[k].used && T[k].kind == RQ_RECV && !T[k].done && T[k].real != MPI_REQUEST_NULL) poll_one(k, &rc);
        for (int i = 0; i < ncomm; i++) {
            if (!expect[i]) continue;
            int short_of = 0;
            for (int p = 0; p < C[i].size; p++) short_of |= C[i].recvd[p] < expect[i][p];
            if (!short_of) continue;
            missing = 1;
            int flag = 0;
            MPI_Message msg;
            MPI_Status st = FRESH_STATUS;
            if ((rc = PMPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, C[i].r, &flag, &msg, &st))) return mpi_error(rc, err, errlen, "draining");
            if (!flag) continue;
            MPI_Count len = status_bytes(&st);
            char *data = malloc(len ? len : 1);
            if (!data) return snprintf(err, errlen, "out of memory"), -1;
            if ((rc = PMPI_Mrecv_c(data, len, MPI_BYTE, &msg, &st))) return mpi_error(rc, err, errlen, "draining");
            store_add(i, st.MPI_SOURCE, st.MPI_TAG, data, len);
            count_recv(i, &st);
            stat_msgs++; stat_bytes += len;
        }
    }
    for (int i = 0; i < ncomm; i++) free(expect[i]);
    free(expect);
    free(rs);
    /* every message sent is received: the sends complete */
    for (int k = 0; k < nT; k++)
        if (T[k].used && T[k].kind == RQ_SEND && !T[k].done) {
            MPI_Status st = FRESH_STATUS;
            if ((rc = PMPI_Wait(&T[k].real, &st))) return mpi_error(rc, err, errlen, "completing a send");
            completed(k, &st);
        }
    /* and receives still posted match nothing in flight: taken back, posted again later */
    for (int k = 0; k < nT; k++)
        if (T[k].used && T[k].kind == RQ_RECV && !T[k].done && T[k].real != MPI_REQUEST_NULL) {
            MPI_Status st = FRESH_STATUS;
            int cancelled = 0;
            PMPI_Cancel(&T[k].real);
            PMPI_Wait(&T[k].real, &st);
            cancelled = status_cancelled(&st);
            if (cancelled) { T[k].repost = 1; T[k].real = MPI_REQUEST_NULL; }
            else completed(k, &st);
        }
    return 0;
}
