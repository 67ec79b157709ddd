/* p2p.c: point to point, sends, receives, probes and matched receives. Counted per communicator
 * and peer: sent at posting, received at completion. Blocking calls are nonblocking ones
 * completed in the layer's loop. Every receive first looks at the messages the layer holds
 * (drained at a cut), which are older than anything MPI could match; a matched probe's message
 * is kept by the layer (message.c) until the application receives it. */
#include "layer.h"

static inline void count_send(int ci, int dest)
{
    if (ci >= 0 && dest >= 0 && dest < C[ci].size) C[ci].sent[dest]++;
}
enum smode { S_STD, S_SYNC, S_READY, S_BUF };
static int post_send(int mode, const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm real, MPI_Request *r)
{
    switch (mode) {
    case S_SYNC: return PMPI_Issend_c(b, n, t, d, tag, real, r);
    case S_READY: return PMPI_Irsend_c(b, n, t, d, tag, real, r);
    case S_BUF: return PMPI_Ibsend_c(b, n, t, d, tag, real, r);
    default: return PMPI_Isend_c(b, n, t, d, tag, real, r);
    }
}
static int send_blocking(int mode, const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c)
{
    enter();
    int ci = idx(c), rc;
    MPI_Request r;
    count_send(ci, d);
    rc = post_send(mode, b, n, t, d, tag, R(c), &r);
    if (!rc) {
        int k = treq_new(RQ_SEND, ci, r);
        T[k].internal = 1;
        while (!poll_one(k, &rc)) loop_pause();
        treq_free(k);
    }
    leave();
    return rc;
}
static int send_nonblocking(int mode, const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r)
{
    enter();
    int ci = idx(c);
    count_send(ci, d);
    int rc = post_send(mode, b, n, t, d, tag, R(c), r);
    if (!rc && ci >= 0) {
        int k = treq_new(RQ_SEND, ci, *r); /* (T may move) */
        *r = T[k].app = LAYER_REQUEST(++layer_handles);
    }
    leave();
    return rc;
}
EXPORT int MPI_Send(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c) { return send_blocking(S_STD, b, n, t, d, tag, c); }
EXPORT int MPI_Send_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c) { return send_blocking(S_STD, b, n, t, d, tag, c); }
EXPORT int MPI_Ssend(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c) { return send_blocking(S_SYNC, b, n, t, d, tag, c); }
EXPORT int MPI_Ssend_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c) { return send_blocking(S_SYNC, b, n, t, d, tag, c); }
EXPORT int MPI_Rsend(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c) { return send_blocking(S_READY, b, n, t, d, tag, c); }
EXPORT int MPI_Rsend_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c) { return send_blocking(S_READY, b, n, t, d, tag, c); }
EXPORT int MPI_Bsend(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c) { return send_blocking(S_BUF, b, n, t, d, tag, c); }
EXPORT int MPI_Bsend_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c) { return send_blocking(S_BUF, b, n, t, d, tag, c); }
EXPORT int MPI_Isend(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r) { return send_nonblocking(S_STD, b, n, t, d, tag, c, r); }
EXPORT int MPI_Isend_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r) { return send_nonblocking(S_STD, b, n, t, d, tag, c, r); }
EXPORT int MPI_Issend(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r) { return send_nonblocking(S_SYNC, b, n, t, d, tag, c, r); }
EXPORT int MPI_Issend_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r) { return send_nonblocking(S_SYNC, b, n, t, d, tag, c, r); }
EXPORT int MPI_Irsend(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r) { return send_nonblocking(S_READY, b, n, t, d, tag, c, r); }
EXPORT int MPI_Irsend_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r) { return send_nonblocking(S_READY, b, n, t, d, tag, c, r); }
EXPORT int MPI_Ibsend(const void *b, int n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r) { return send_nonblocking(S_BUF, b, n, t, d, tag, c, r); }
EXPORT int MPI_Ibsend_c(const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r) { return send_nonblocking(S_BUF, b, n, t, d, tag, c, r); }

/* post a receive for tracked request k (from the store if a held message matches) */
int post_recv(int k)
{
    int m = store_match(T[k].comm, T[k].peer, T[k].tag);
    if (m >= 0) {
        MPI_Status st;
        int rc = store_take(m, T[k].buf, T[k].count, T[k].type, &st);
        T[k].done = 1; T[k].st = st; T[k].real = MPI_REQUEST_NULL;
        return rc;
    }
    return PMPI_Irecv_c(T[k].buf, T[k].count, T[k].type, T[k].peer, T[k].tag, C[T[k].comm].r, &T[k].real);
}
static int recv_track(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, int ci)
{
    int k = treq_new(RQ_RECV, ci, MPI_REQUEST_NULL);
    T[k].buf = b; T[k].count = n; T[k].type = t; T[k].peer = s; T[k].tag = tag;
    return k;
}
static int recv_blocking(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Status *st)
{
    enter();
    int ci = idx(c), rc;
    if (ci < 0 || s == MPI_PROC_NULL) { rc = PMPI_Recv_c(b, n, t, s, tag, R(c), st); leave(); return rc; }
    int k = recv_track(b, n, t, s, tag, ci);
    T[k].internal = 1;
    rc = post_recv(k);
    while (!rc && !poll_one(k, &rc)) loop_pause();
    if (!rc) { give_status(st, &T[k].st); rc = T[k].st.MPI_ERROR == MPI_ERR_TRUNCATE ? MPI_ERR_TRUNCATE : MPI_SUCCESS; }
    treq_free(k);
    leave();
    return rc;
}
static int recv_nonblocking(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Request *r)
{
    enter();
    int ci = idx(c), rc;
    if (ci < 0 || s == MPI_PROC_NULL) { rc = PMPI_Irecv_c(b, n, t, s, tag, R(c), r); leave(); return rc; }
    int k = recv_track(b, n, t, s, tag, ci);
    rc = post_recv(k);
    if (rc) { treq_free(k); leave(); return rc; }
    *r = T[k].app = LAYER_REQUEST(++layer_handles);
    leave();
    return rc;
}
EXPORT int MPI_Recv(void *b, int n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Status *st) { return recv_blocking(b, n, t, s, tag, c, st); }
EXPORT int MPI_Recv_c(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Status *st) { return recv_blocking(b, n, t, s, tag, c, st); }
EXPORT int MPI_Irecv(void *b, int n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Request *r) { return recv_nonblocking(b, n, t, s, tag, c, r); }
EXPORT int MPI_Irecv_c(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Request *r) { return recv_nonblocking(b, n, t, s, tag, c, r); }

static int sendrecv(const void *sb, MPI_Count sn, MPI_Datatype stype, int d, int stag, void *rb, MPI_Count rn,
                    MPI_Datatype rtype, int s, int rtag, MPI_Comm c, MPI_Status *st)
{
    enter();
    int ci = idx(c), rc;
    if (ci < 0) { rc = PMPI_Sendrecv_c(sb, sn, stype, d, stag, rb, rn, rtype, s, rtag, c, st); leave(); return rc; }
    int kr = recv_track(rb, rn, rtype, s, rtag, ci);
    T[kr].internal = 1;
    rc = s == MPI_PROC_NULL ? PMPI_Irecv_c(rb, rn, rtype, s, rtag, C[ci].r, &T[kr].real) : post_recv(kr);
    MPI_Request sr;
    count_send(ci, d);
    if (!rc) rc = PMPI_Isend_c(sb, sn, stype, d, stag, C[ci].r, &sr);
    int ks = -1;
    if (!rc) { ks = treq_new(RQ_SEND, ci, sr); T[ks].internal = 1; }
    while (!rc && !(poll_one(kr, &rc) & poll_one(ks, &rc))) loop_pause();
    if (!rc) give_status(st, &T[kr].st);
    treq_free(kr);
    if (ks >= 0) treq_free(ks);
    leave();
    return rc;
}
EXPORT int MPI_Sendrecv(const void *sb, int sn, MPI_Datatype stype, int d, int stag, void *rb, int rn, MPI_Datatype rtype,
                        int s, int rtag, MPI_Comm c, MPI_Status *st)
{ return sendrecv(sb, sn, stype, d, stag, rb, rn, rtype, s, rtag, c, st); }
EXPORT int MPI_Sendrecv_c(const void *sb, MPI_Count sn, MPI_Datatype stype, int d, int stag, void *rb, MPI_Count rn,
                          MPI_Datatype rtype, int s, int rtag, MPI_Comm c, MPI_Status *st)
{ return sendrecv(sb, sn, stype, d, stag, rb, rn, rtype, s, rtag, c, st); }
static int sendrecv_replace(void *b, MPI_Count n, MPI_Datatype t, int d, int stag, int s, int rtag, MPI_Comm c, MPI_Status *st)
{
    MPI_Count size = 0, pos = 0;
    int rc = PMPI_Pack_size_c(n, t, C[1].r, &size);
    char *copy = rc ? NULL : malloc(size ? size : 1);
    if (!copy) return rc ? rc : MPI_ERR_NO_MEM;
    rc = PMPI_Pack_c(b, n, t, copy, size, &pos, C[1].r);
    if (!rc) rc = sendrecv(copy, pos, MPI_PACKED, d, stag, b, n, t, s, rtag, c, st);
    free(copy);
    return rc;
}
EXPORT int MPI_Sendrecv_replace(void *b, int n, MPI_Datatype t, int d, int stag, int s, int rtag, MPI_Comm c, MPI_Status *st)
{ return sendrecv_replace(b, n, t, d, stag, s, rtag, c, st); }
EXPORT int MPI_Sendrecv_replace_c(void *b, MPI_Count n, MPI_Datatype t, int d, int stag, int s, int rtag, MPI_Comm c, MPI_Status *st)
{ return sendrecv_replace(b, n, t, d, stag, s, rtag, c, st); }

/* ---- probes and matched receives ---- */
static int iprobe(int s, int tag, int ci, int *flag, MPI_Status *st)
{
    int m = store_match(ci, s, tag);
    if (m >= 0) { MPI_Status mine; store_status(m, &mine); give_status(st, &mine); *flag = 1; return MPI_SUCCESS; }
    return PMPI_Iprobe(s, tag, C[ci].r, flag, st);
}
EXPORT int MPI_Iprobe(int s, int tag, MPI_Comm c, int *flag, MPI_Status *st)
{
    enter();
    int ci = idx(c);
    int rc = ci < 0 ? PMPI_Iprobe(s, tag, c, flag, st) : iprobe(s, tag, ci, flag, st);
    leave();
    return rc;
}
EXPORT int MPI_Probe(int s, int tag, MPI_Comm c, MPI_Status *st)
{
    enter();
    int ci = idx(c), rc, flag = 0;
    if (ci < 0) rc = PMPI_Probe(s, tag, c, st);
    else while (!(rc = iprobe(s, tag, ci, &flag, st)) && !flag) loop_pause();
    leave();
    return rc;
}
/* a matched probe: the message is the application's from now on (counted here) */
static int improbe(int s, int tag, int ci, int *flag, MPI_Message *msg, MPI_Status *st)
{
    MPI_Status mine = FRESH_STATUS;
    int m = store_match(ci, s, tag);
    if (m >= 0) {
        store_status(m, &mine);
        int h = held_add(ci, MPI_MESSAGE_NULL, &mine);
        H[h].stored = m;
        M[m].comm = -1; /* no receive matches it any more */
        H[h].app = LAYER_MESSAGE(++layer_handles);
        *msg = H[h].app;
        *flag = 1;
        give_status(st, &mine);
        return MPI_SUCCESS;
    }
    int rc = PMPI_Improbe(s, tag, C[ci].r, flag, msg, &mine);
    if (!rc && *flag) {
        if (*msg != MPI_MESSAGE_NO_PROC) {
            count_recv(ci, &mine);
            int h = held_add(ci, *msg, &mine); /* (H may move) */
            *msg = H[h].app = LAYER_MESSAGE(++layer_handles);
        }
        give_status(st, &mine);
    }
    return rc;
}
EXPORT int MPI_Improbe(int s, int tag, MPI_Comm c, int *flag, MPI_Message *msg, MPI_Status *st)
{
    enter();
    int ci = idx(c);
    int rc = ci < 0 ? PMPI_Improbe(s, tag, c, flag, msg, st) : improbe(s, tag, ci, flag, msg, st);
    leave();
    return rc;
}
EXPORT int MPI_Mprobe(int s, int tag, MPI_Comm c, MPI_Message *msg, MPI_Status *st)
{
    enter();
    int ci = idx(c), rc, flag = 0;
    if (ci < 0) rc = PMPI_Mprobe(s, tag, c, msg, st);
    else while (!(rc = improbe(s, tag, ci, &flag, msg, st)) && !flag) loop_pause();
    leave();
    return rc;
}
static int mrecv(void *b, MPI_Count n, MPI_Datatype t, MPI_Message *msg, MPI_Status *st)
{
    enter();
    int h = held_find(*msg), rc;
    if (h < 0) rc = PMPI_Mrecv_c(b, n, t, msg, st);
    else if (H[h].stored >= 0) {
        M[H[h].stored].comm = H[h].comm;
        rc = store_take(H[h].stored, b, n, t, st);
        H[h].used = 0;
        *msg = MPI_MESSAGE_NULL;
    } else {
        H[h].used = 0;
        MPI_Message real = H[h].real;
        rc = PMPI_Mrecv_c(b, n, t, &real, st);
        *msg = MPI_MESSAGE_NULL;
    }
    leave();
    return rc;
}
EXPORT int MPI_Mrecv(void *b, int n, MPI_Datatype t, MPI_Message *msg, MPI_Status *st) { return mrecv(b, n, t, msg, st); }
EXPORT int MPI_Mrecv_c(void *b, MPI_Count n, MPI_Datatype t, MPI_Message *msg, MPI_Status *st) { return mrecv(b, n, t, msg, st); }
static int imrecv(void *b, MPI_Count n, MPI_Datatype t, MPI_Message *msg, MPI_Request *r)
{
    /* completed at once: a matched message is here or on its way (and counted already) */
    MPI_Status st = FRESH_STATUS;
    int rc = mrecv(b, n, t, msg, &st);
    if (rc) return rc;
    enter();
    int k = treq_new(RQ_MRECV, -1, MPI_REQUEST_NULL);
    T[k].done = 1; T[k].st = st;
    T[k].app = *r = LAYER_REQUEST(++layer_handles);
    leave();
    return rc;
}
EXPORT int MPI_Imrecv(void *b, int n, MPI_Datatype t, MPI_Message *msg, MPI_Request *r) { return imrecv(b, n, t, msg, r); }
EXPORT int MPI_Imrecv_c(void *b, MPI_Count n, MPI_Datatype t, MPI_Message *msg, MPI_Request *r) { return imrecv(b, n, t, msg, r); }
