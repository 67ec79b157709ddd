/* p2p.c: point to point, sends, receives, probes and matched receives. Counted per communicator
 * and peer: sent at posting, received at completion. Blocking calls are nonblocking ones
 * completed in the layer's loop. Every receive first looks at the messages the layer holds
 * (drained at a cut), which are older than anything MPI could match; a matched probe's message
 * is kept by the layer (message.c) until the application receives it. */
#include "layer.h"

static inline void count_send(int ci, int dest)
{
    if (ci >= 0 && dest >= 0 && dest < (C[ci].inter ? C[ci].rsize : C[ci].size)) C[ci].sent[dest]++;
}
enum smode { S_STD, S_SYNC, S_READY, S_BUF };
static const char *send_name[] = {"MPI_Send", "MPI_Ssend", "MPI_Rsend", "MPI_Bsend"};
static const char *isend_name[] = {"MPI_Isend", "MPI_Issend", "MPI_Irsend", "MPI_Ibsend"};
static int post_send(int mode, const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm real, MPI_Request *r)
{
    switch (mode) {
    case S_SYNC: return PMPI_Issend_c(b, n, t, d, tag, real, r);
    case S_READY: return PMPI_Irsend_c(b, n, t, d, tag, real, r);
    case S_BUF: return PMPI_Ibsend_c(b, n, t, d, tag, real, r);
    default: return PMPI_Isend_c(b, n, t, d, tag, real, r);
    }
}
/* the communicator (raised on the default handler if it is not one) and the datatype */
#define P2P_BEGIN(c, t, fn) \
    enter(); \
    int ci = idx(c), rc = MPI_SUCCESS; \
    MPI_Datatype rt = MPI_DATATYPE_NULL; \
    if (ci < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, fn); leave(); return rc; } \
    if ((rc = type_in(t, &rt, 0))) goto out;
#define P2P_END(fn) \
    out: \
    if (rc) rc = raise_error(OBJ_COMM, ci, rc, fn); \
    leave(); \
    return rc;

static int send_blocking(int mode, const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c)
{
    P2P_BEGIN(c, t, send_name[mode]);
    MPI_Request r;
    count_send(ci, d);
    rc = post_send(mode, b, n, rt, d, tag, C[ci].r, &r);
    if (!rc) {
        int k = treq_new(RQ_SEND, ci, r);
        T[k].internal = 1;
        T[k].peer = d;
        while (!poll_one(k, &rc)) loop_pause();
        treq_free(k);
    }
    P2P_END(send_name[mode]);
}
static int send_nonblocking(int mode, const void *b, MPI_Count n, MPI_Datatype t, int d, int tag, MPI_Comm c, MPI_Request *r)
{
    P2P_BEGIN(c, t, isend_name[mode]);
    MPI_Request real;
    count_send(ci, d);
    rc = post_send(mode, b, n, rt, d, tag, C[ci].r, &real);
    if (!rc) {
        *r = request_made(RQ_SEND, ci, real, NULL, isend_name[mode]);
        T[treq_find(*r)].peer = d;
    }
    P2P_END(isend_name[mode]);
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
        T[k].done = 1; T[k].st = st;
        if (!persistent(k)) T[k].real = MPI_REQUEST_NULL;
        return rc == MPI_ERR_TRUNCATE ? MPI_SUCCESS : rc; /* a truncation is the receive's status */
    }
    if (persistent(k)) return PMPI_Start(&T[k].real);
    MPI_Datatype rt;
    int rc = type_in(T[k].type, &rt, 0);
    if (rc) return rc;
    return PMPI_Irecv_c(T[k].buf, T[k].count, rt, T[k].peer, T[k].tag, C[T[k].comm].r, &T[k].real);
}
static int recv_track(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, int ci)
{
    int k = treq_new(RQ_RECV, ci, MPI_REQUEST_NULL);
    T[k].buf = b; T[k].count = n; T[k].type = t; T[k].peer = s; T[k].tag = tag;
    type_hold(t, 1);
    return k;
}
static int recv_blocking(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Status *st)
{
    P2P_BEGIN(c, t, "MPI_Recv");
    if (s == MPI_PROC_NULL) { rc = PMPI_Recv_c(b, n, rt, s, tag, C[ci].r, st); goto out; }
    int k = recv_track(b, n, t, s, tag, ci);
    T[k].internal = 1;
    rc = post_recv(k);
    while (!rc && !poll_one(k, &rc)) loop_pause();
    if (!rc) { give_status(st, &T[k].st); rc = T[k].st.MPI_ERROR == MPI_ERR_TRUNCATE ? MPI_ERR_TRUNCATE : MPI_SUCCESS; }
    treq_free(k);
    P2P_END("MPI_Recv");
}
static int recv_nonblocking(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Request *r)
{
    P2P_BEGIN(c, t, "MPI_Irecv");
    if (s == MPI_PROC_NULL) {
        MPI_Request real;
        if (!(rc = PMPI_Irecv_c(b, n, rt, s, tag, C[ci].r, &real)))
            *r = request_made(RQ_OTHER, ci, real, NULL, "MPI_Irecv");
        goto out;
    }
    int k = recv_track(b, n, t, s, tag, ci);
    T[k].made_by = "MPI_Irecv";
    rc = post_recv(k);
    if (rc) { treq_free(k); goto out; }
    *r = T[k].app;
    P2P_END("MPI_Irecv");
}
EXPORT int MPI_Recv(void *b, int n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Status *st) { return recv_blocking(b, n, t, s, tag, c, st); }
EXPORT int MPI_Recv_c(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Status *st) { return recv_blocking(b, n, t, s, tag, c, st); }
EXPORT int MPI_Irecv(void *b, int n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Request *r) { return recv_nonblocking(b, n, t, s, tag, c, r); }
EXPORT int MPI_Irecv_c(void *b, MPI_Count n, MPI_Datatype t, int s, int tag, MPI_Comm c, MPI_Request *r) { return recv_nonblocking(b, n, t, s, tag, c, r); }

/* ---- send and receive in one: a tracked receive and a tracked send ---- */
static int sendrecv_post(const void *sb, MPI_Count sn, MPI_Datatype stype, int d, int stag, void *rb, MPI_Count rn,
                         MPI_Datatype rtype, int s, int rtag, int ci, int *kr_out)
{
    MPI_Datatype rst, rrt;
    int rc;
    if ((rc = type_in(stype, &rst, 0)) || (rc = type_in(rtype, &rrt, 0))) return rc;
    int kr = recv_track(rb, rn, rtype, s, rtag, ci);
    T[kr].kind = RQ_SENDRECV;
    rc = s == MPI_PROC_NULL ? PMPI_Irecv_c(rb, rn, rrt, s, rtag, C[ci].r, &T[kr].real) : post_recv(kr);
    if (rc) { treq_free(kr); return rc; }
    MPI_Request sr;
    count_send(ci, d);
    if ((rc = PMPI_Isend_c(sb, sn, rst, d, stag, C[ci].r, &sr))) return rc;
    int ks = treq_new(RQ_SEND, ci, sr);
    T[ks].internal = 1;
    T[ks].peer = d;
    T[kr].partner = ks;
    *kr_out = kr;
    return MPI_SUCCESS;
}
static int sendrecv(const void *sb, MPI_Count sn, MPI_Datatype stype, int d, int stag, void *rb, MPI_Count rn,
                    MPI_Datatype rtype, int s, int rtag, MPI_Comm c, MPI_Status *st)
{
    enter();
    int ci = idx(c), rc, kr = -1;
    if (ci < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Sendrecv"); leave(); return rc; }
    if (!(rc = sendrecv_post(sb, sn, stype, d, stag, rb, rn, rtype, s, rtag, ci, &kr))) {
        T[kr].internal = 1;
        while (!rc && !poll_one(kr, &rc)) loop_pause();
        if (!rc) { give_status(st, &T[kr].st); if (T[kr].st.MPI_ERROR == MPI_ERR_TRUNCATE) rc = MPI_ERR_TRUNCATE; }
        treq_free(T[kr].partner);
        treq_free(kr);
    }
    if (rc) rc = raise_error(OBJ_COMM, ci, rc, "MPI_Sendrecv");
    leave();
    return rc;
}
EXPORT int MPI_Sendrecv(const void *sb, int sn, MPI_Datatype stype, int d, int stag, void *rb, int rn, MPI_Datatype rtype,
                        int s, int rtag, MPI_Comm c, MPI_Status *st)
{ return sendrecv(sb, sn, stype, d, stag, rb, rn, rtype, s, rtag, c, st); }
EXPORT int MPI_Sendrecv_c(const void *sb, MPI_Count sn, MPI_Datatype stype, int d, int stag, void *rb, MPI_Count rn,
                          MPI_Datatype rtype, int s, int rtag, MPI_Comm c, MPI_Status *st)
{ return sendrecv(sb, sn, stype, d, stag, rb, rn, rtype, s, rtag, c, st); }
static int isendrecv(const void *sb, MPI_Count sn, MPI_Datatype stype, int d, int stag, void *rb, MPI_Count rn,
                     MPI_Datatype rtype, int s, int rtag, MPI_Comm c, MPI_Request *r)
{
    enter();
    int ci = idx(c), rc, kr = -1;
    if (ci < 0) { rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Isendrecv"); leave(); return rc; }
    if (!(rc = sendrecv_post(sb, sn, stype, d, stag, rb, rn, rtype, s, rtag, ci, &kr))) {
        T[kr].made_by = "MPI_Isendrecv";
        *r = T[kr].app;
    }
    if (rc) rc = raise_error(OBJ_COMM, ci, rc, "MPI_Isendrecv");
    leave();
    return rc;
}
EXPORT int MPI_Isendrecv(const void *sb, int sn, MPI_Datatype stype, int d, int stag, void *rb, int rn,
                         MPI_Datatype rtype, int s, int rtag, MPI_Comm c, MPI_Request *r)
{ return isendrecv(sb, sn, stype, d, stag, rb, rn, rtype, s, rtag, c, r); }
EXPORT int MPI_Isendrecv_c(const void *sb, MPI_Count sn, MPI_Datatype stype, int d, int stag, void *rb, MPI_Count rn,
                           MPI_Datatype rtype, int s, int rtag, MPI_Comm c, MPI_Request *r)
{ return isendrecv(sb, sn, stype, d, stag, rb, rn, rtype, s, rtag, c, r); }

/* the replace forms: what is sent is packed first, then received in place */
static int packed_copy(void *b, MPI_Count n, MPI_Datatype t, char **copy, MPI_Count *len)
{
    MPI_Count size = 0, pos = 0;
    MPI_Datatype rt;
    int rc = type_in(t, &rt, 0);
    if (!rc) rc = PMPI_Pack_size_c(n, rt, C[1].r, &size);
    if (rc) return rc;
    *copy = malloc(size ? size : 1);
    if (!*copy) return MPI_ERR_NO_MEM;
    if ((rc = PMPI_Pack_c(b, n, rt, *copy, size, &pos, C[1].r))) { free(*copy); return rc; }
    *len = pos;
    return MPI_SUCCESS;
}
static int sendrecv_replace(void *b, MPI_Count n, MPI_Datatype t, int d, int stag, int s, int rtag, MPI_Comm c, MPI_Status *st)
{
    char *copy = NULL;
    MPI_Count len = 0;
    enter();
    int rc = packed_copy(b, n, t, &copy, &len);
    leave();
    if (rc) return raise_error(OBJ_COMM, idx(c), rc, "MPI_Sendrecv_replace");
    rc = sendrecv(copy, len, MPI_PACKED, d, stag, b, n, t, s, rtag, c, st);
    free(copy);
    return rc;
}
EXPORT int MPI_Sendrecv_replace(void *b, int n, MPI_Datatype t, int d, int stag, int s, int rtag, MPI_Comm c, MPI_Status *st)
{ return sendrecv_replace(b, n, t, d, stag, s, rtag, c, st); }
EXPORT int MPI_Sendrecv_replace_c(void *b, MPI_Count n, MPI_Datatype t, int d, int stag, int s, int rtag, MPI_Comm c, MPI_Status *st)
{ return sendrecv_replace(b, n, t, d, stag, s, rtag, c, st); }
/* the packed copy lives as long as the request: kept in the send's tracked request */
static int isendrecv_replace(void *b, MPI_Count n, MPI_Datatype t, int d, int stag, int s, int rtag, MPI_Comm c, MPI_Request *r)
{
    char *copy = NULL;
    MPI_Count len = 0;
    enter();
    int rc = packed_copy(b, n, t, &copy, &len);
    if (!rc) rc = isendrecv(copy, len, MPI_PACKED, d, stag, b, n, t, s, rtag, c, r);
    else rc = raise_error(OBJ_COMM, idx(c), rc, "MPI_Isendrecv_replace");
    if (!rc) { int ks = T[treq_find(*r)].partner; T[ks].buf = copy; T[ks].ownbuf = 1; } /* freed with the send */
    else free(copy);
    leave();
    return rc;
}
EXPORT int MPI_Isendrecv_replace(void *b, int n, MPI_Datatype t, int d, int stag, int s, int rtag, MPI_Comm c, MPI_Request *r)
{ return isendrecv_replace(b, n, t, d, stag, s, rtag, c, r); }
EXPORT int MPI_Isendrecv_replace_c(void *b, MPI_Count n, MPI_Datatype t, int d, int stag, int s, int rtag, MPI_Comm c, MPI_Request *r)
{ return isendrecv_replace(b, n, t, d, stag, s, rtag, c, r); }

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
    int ci = idx(c), rc;
    if (ci < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Iprobe");
    else if ((rc = iprobe(s, tag, ci, flag, st))) rc = raise_error(OBJ_COMM, ci, rc, "MPI_Iprobe");
    leave();
    return rc;
}
EXPORT int MPI_Probe(int s, int tag, MPI_Comm c, MPI_Status *st)
{
    enter();
    int ci = idx(c), rc, flag = 0;
    if (ci < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Probe");
    else if (s == MPI_PROC_NULL) rc = PMPI_Probe(s, tag, C[ci].r, st);
    else while (!(rc = iprobe(s, tag, ci, &flag, st)) && !flag) loop_pause();
    if (rc && ci >= 0) rc = raise_error(OBJ_COMM, ci, rc, "MPI_Probe");
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
        *msg = H[h].app;
        *flag = 1;
        give_status(st, &mine);
        return MPI_SUCCESS;
    }
    int rc = PMPI_Improbe(s, tag, C[ci].r, flag, msg, &mine);
    if (!rc && *flag) {
        if (*msg != MPI_MESSAGE_NO_PROC) {
            count_recv(ci, &mine);
            int h = held_add(ci, *msg, &mine);
            *msg = H[h].app;
        }
        give_status(st, &mine);
    }
    return rc;
}
EXPORT int MPI_Improbe(int s, int tag, MPI_Comm c, int *flag, MPI_Message *msg, MPI_Status *st)
{
    enter();
    int ci = idx(c), rc;
    if (ci < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Improbe");
    else if ((rc = improbe(s, tag, ci, flag, msg, st))) rc = raise_error(OBJ_COMM, ci, rc, "MPI_Improbe");
    leave();
    return rc;
}
EXPORT int MPI_Mprobe(int s, int tag, MPI_Comm c, MPI_Message *msg, MPI_Status *st)
{
    enter();
    int ci = idx(c), rc, flag = 0;
    if (ci < 0) rc = raise_error(OBJ_NONE, -1, MPI_ERR_COMM, "MPI_Mprobe");
    else {
        while (!(rc = improbe(s, tag, ci, &flag, msg, st)) && !flag) loop_pause();
        if (rc) rc = raise_error(OBJ_COMM, ci, rc, "MPI_Mprobe");
    }
    leave();
    return rc;
}
static int mrecv(void *b, MPI_Count n, MPI_Datatype t, MPI_Message *msg, MPI_Status *st)
{
    MPI_Datatype rt;
    int rc = type_in(t, &rt, 0);
    if (rc) return rc;
    if (*msg == MPI_MESSAGE_NO_PROC || *msg == MPI_MESSAGE_NULL) return PMPI_Mrecv_c(b, n, rt, msg, st);
    int h = held_find(*msg);
    if (h < 0) return MPI_ERR_REQUEST;
    if (H[h].stored >= 0) {
        M[H[h].stored].comm = H[h].comm;
        rc = store_take(H[h].stored, b, n, t, st);
    } else {
        MPI_Message real = H[h].real;
        rc = PMPI_Mrecv_c(b, n, rt, &real, st);
    }
    H[h].used = 0;
    *msg = MPI_MESSAGE_NULL;
    return rc;
}
EXPORT int MPI_Mrecv(void *b, int n, MPI_Datatype t, MPI_Message *msg, MPI_Status *st)
{
    enter();
    int h = held_find(*msg), ci = h >= 0 ? H[h].comm : -1;
    int rc = mrecv(b, n, t, msg, st);
    if (rc) rc = raise_error(ci >= 0 ? OBJ_COMM : OBJ_NONE, ci, rc, "MPI_Mrecv");
    leave();
    return rc;
}
EXPORT int MPI_Mrecv_c(void *b, MPI_Count n, MPI_Datatype t, MPI_Message *msg, MPI_Status *st)
{
    enter();
    int h = held_find(*msg), ci = h >= 0 ? H[h].comm : -1;
    int rc = mrecv(b, n, t, msg, st);
    if (rc) rc = raise_error(ci >= 0 ? OBJ_COMM : OBJ_NONE, ci, rc, "MPI_Mrecv");
    leave();
    return rc;
}
static int imrecv(void *b, MPI_Count n, MPI_Datatype t, MPI_Message *msg, MPI_Request *r)
{
    /* completed at once: a matched message is here or on its way (and counted already) */
    MPI_Status st = FRESH_STATUS;
    enter();
    int h = held_find(*msg), ci = h >= 0 ? H[h].comm : -1;
    int rc = mrecv(b, n, t, msg, &st);
    if (rc == MPI_ERR_TRUNCATE) { st.MPI_ERROR = rc; rc = MPI_SUCCESS; }
    if (!rc) {
        int k = treq_new(RQ_MRECV, ci, MPI_REQUEST_NULL);
        T[k].done = 1; T[k].st = st;
        T[k].made_by = "MPI_Imrecv";
        *r = T[k].app;
    } else rc = raise_error(ci >= 0 ? OBJ_COMM : OBJ_NONE, ci, rc, "MPI_Imrecv");
    leave();
    return rc;
}
EXPORT int MPI_Imrecv(void *b, int n, MPI_Datatype t, MPI_Message *msg, MPI_Request *r) { return imrecv(b, n, t, msg, r); }
EXPORT int MPI_Imrecv_c(void *b, MPI_Count n, MPI_Datatype t, MPI_Message *msg, MPI_Request *r) { return imrecv(b, n, t, msg, r); }
