/* drain.c: the bookmark exchange, with the application held at the cut: matched probes
 * received into the layer, the per-peer sent counts exchanged (over the layer's world: every
 * rank tells every other, by context id, how many messages it sent it; a peer of an
 * intercommunicator is in its remote group), every message still missing received (posted
 * receives first), the sends completed, the receives still posted cancelled to be posted again
 * after the rebuild; then the other requests the application has in flight are completed. */
#include "layer.h"

static int is_receive(int k)
{
    return T[k].kind == RQ_RECV || T[k].kind == RQ_SENDRECV || (T[k].kind == RQ_PERSIST && T[k].precv && T[k].active);
}
/* the rank in context i's (remote) group of world rank w, or -1 */
static int peer_of(int i, int w)
{
    int *ranks = C[i].inter ? C[i].rwr : C[i].wr, n = C[i].inter ? C[i].rsize : C[i].size;
    for (int p = 0; p < n; p++) if (ranks[p] == w) return p;
    return -1;
}

static int exchange(uint64_t **expect, char *err, int errlen)
{
    int size = C[0].size, rc;
    int *scount = calloc(size, sizeof(int)), *rcount = calloc(size, sizeof(int));
    int *sdispl = calloc(size, sizeof(int)), *rdispl = calloc(size, sizeof(int));
    if (!scount || !rcount || !sdispl || !rdispl) return snprintf(err, errlen, "out of memory"), -1;
    /* what I sent each world rank, per context: (id, count) pairs */
    for (int i = 0; i < ncomm; i++) {
        if (!C[i].used || !C[i].sent || C[i].foreign) continue;
        int *ranks = C[i].inter ? C[i].rwr : C[i].wr, n = C[i].inter ? C[i].rsize : C[i].size;
        for (int p = 0; p < n; p++) if (C[i].sent[p]) scount[ranks[p]] += 2;
    }
    int total = 0;
    for (int r = 0; r < size; r++) { sdispl[r] = total; total += scount[r]; }
    uint64_t *out = malloc((total + 1) * sizeof *out);
    int *fill = calloc(size, sizeof(int));
    if (!out || !fill) return snprintf(err, errlen, "out of memory"), -1;
    for (int i = 0; i < ncomm; i++) {
        if (!C[i].used || !C[i].sent || C[i].foreign) continue;
        int *ranks = C[i].inter ? C[i].rwr : C[i].wr, n = C[i].inter ? C[i].rsize : C[i].size;
        for (int p = 0; p < n; p++) {
            if (!C[i].sent[p]) continue;
            int w = ranks[p], at = sdispl[w] + fill[w];
            out[at] = C[i].id; out[at + 1] = C[i].sent[p];
            fill[w] += 2;
        }
    }
    if ((rc = PMPI_Alltoall(scount, 1, MPI_INT, rcount, 1, MPI_INT, proto_comm)))
        return mpi_error(rc, err, errlen, "exchanging message counts");
    int rtotal = 0;
    for (int r = 0; r < size; r++) { rdispl[r] = rtotal; rtotal += rcount[r]; }
    uint64_t *in = malloc((rtotal + 1) * sizeof *in);
    if (!in) return snprintf(err, errlen, "out of memory"), -1;
    if ((rc = PMPI_Alltoallv(out, scount, sdispl, MPI_UINT64_T, in, rcount, rdispl, MPI_UINT64_T, proto_comm)))
        return mpi_error(rc, err, errlen, "exchanging message counts");
    for (int w = 0; w < size; w++)
        for (int k = rdispl[w]; k < rdispl[w] + rcount[w]; k += 2)
            for (int i = 0; i < ncomm; i++)
                if (C[i].used && C[i].id == in[k] && expect[i]) {
                    int p = peer_of(i, w);
                    if (p >= 0) expect[i][p] = in[k + 1];
                    break;
                }
    free(scount); free(rcount); free(sdispl); free(rdispl); free(out); free(fill); free(in);
    return 0;
}

int drain(double deadline, char *err, int errlen)
{
    int rc;
    /* sends the application cancelled: a wait returns for them whatever the peers do (MPI
     * guarantees it), and one cancelled for good is no longer counted as sent */
    for (int k = 0; k < nT; k++)
        if (T[k].used && is_send(k) && T[k].cancelling && !T[k].done && T[k].real != MPI_REQUEST_NULL) {
            MPI_Status st = FRESH_STATUS;
            if ((rc = PMPI_Wait(&T[k].real, &st))) return mpi_error(rc, err, errlen, "completing a cancelled send");
            completed(k, &st);
        }
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
    /* the bookmark exchange: what every peer sent me on every context */
    uint64_t **expect = calloc(ncomm + 1, sizeof *expect);
    if (!expect) return snprintf(err, errlen, "out of memory"), -1;
    for (int i = 0; i < ncomm; i++)
        if (C[i].used && C[i].recvd && C[i].r != MPI_COMM_NULL && !C[i].foreign)
            expect[i] = calloc((C[i].inter ? C[i].rsize : C[i].size) + 1, sizeof(uint64_t));
    if (exchange(expect, err, errlen)) return -1;
    /* receive until every count is met: a posted receive first (MPI matches those first), the
     * rest into the layer, oldest first */
    for (int missing = 1; missing;) {
        if (deadline > 0 && now() > deadline) {
            /* a message counted as sent to this rank that MPI does not deliver: the counts are
             * wrong somewhere, and waiting longer would hold the job for ever */
            for (int i = 0; i < ncomm; i++) free(expect[i]);
            free(expect);
            snprintf(err, errlen, "messages in flight to this rank did not arrive within the "
                     "quiesce timeout (snapc_crcp_quiesce_timeout); the job goes on");
            return -1;
        }
        missing = 0;
        for (int k = 0; k < nT; k++)
            if (T[k].used && is_receive(k) && !T[k].done && T[k].real != MPI_REQUEST_NULL) poll_one_plain(k, &rc);
        for (int i = 0; i < ncomm; i++) {
            if (!expect[i]) continue;
            int short_of = 0, peers = C[i].inter ? C[i].rsize : C[i].size;
            for (int p = 0; p < peers; p++) short_of |= C[i].recvd[p] < expect[i][p];
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
    /* every message sent is received: the sends complete */
    for (int k = 0; k < nT; k++)
        if (T[k].used && (T[k].kind == RQ_SEND || (T[k].kind == RQ_PERSIST && !T[k].precv && T[k].active))
            && !T[k].done && T[k].real != MPI_REQUEST_NULL) {
            MPI_Status st = FRESH_STATUS;
            if ((rc = PMPI_Wait(&T[k].real, &st))) return mpi_error(rc, err, errlen, "completing a send");
            completed(k, &st);
        }
    /* and receives still posted match nothing in flight: taken back, posted again later */
    for (int k = 0; k < nT; k++)
        if (T[k].used && is_receive(k) && !T[k].done && T[k].real != MPI_REQUEST_NULL) {
            MPI_Status st = FRESH_STATUS;
            PMPI_Cancel(&T[k].real);
            if (persistent(k)) { PMPI_Wait(&T[k].real, &st); if (status_cancelled(&st)) T[k].repost = 1; else completed(k, &st); continue; }
            PMPI_Wait(&T[k].real, &st);
            if (status_cancelled(&st)) { T[k].repost = 1; T[k].real = MPI_REQUEST_NULL; }
            else completed(k, &st);
        }
    return 0;
}

/* the application's other requests in flight: complete them (epochs are closed first) */
int drain_others(char *err, int errlen)
{
    for (int k = 0; k < nT; k++)
        if (T[k].used && !T[k].done && T[k].real != MPI_REQUEST_NULL &&
            (T[k].kind == RQ_RMA || T[k].kind == RQ_IO || T[k].kind == RQ_OTHER)) {
            MPI_Status st = FRESH_STATUS;
            int rc = PMPI_Wait(&T[k].real, &st);
            if (rc) return mpi_error(rc, err, errlen, "completing a request");
            completed(k, &st);
        }
    return 0;
}
