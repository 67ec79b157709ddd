/* handles.h: the tables of the objects the layer keeps for the application, one section per
 * kind, each kind in its own unit (included by layer.h, inside its hidden-visibility block).
 *
 * A kind the layer virtualizes has a table indexed by the layer, the handle the application
 * holds (which outlives MPI), the real handle of this incarnation, and what it takes to make
 * the object again. Today: communicators (comm.c), tracked requests (request.c), messages held
 * by the layer or by a matched probe (message.c), attributes and keyvals (attr.c); every other
 * object an application makes is only recorded, to refuse a checkpoint while it is live
 * (unsupported.c). A new kind is a new section here and a new unit, with its teardown and
 * replay called from session.c and control.c as comm_teardown and comm_replay are. */
#ifndef CRCP_HANDLES_H
#define CRCP_HANDLES_H

/* ---- communicators (comm.c) ---------------------------------------------------------------- */
enum ckind { K_WORLD, K_SELF, K_DUP, K_SPLIT };
struct vcomm {
    MPI_Comm v, r, shadow;  /* virtual (the app's), real (this incarnation), the layer's twin */
    int kind, parent, color, key;
    int live;               /* not freed by the app (a freed parent of a live one is replayed) */
    int needed;
    int nullsplit;          /* a Split that gave this rank MPI_COMM_NULL: replayed, nothing kept */
    int size, rank;
    MPI_Errhandler eh;      /* predefined error handler the app set, or MPI_ERRHANDLER_NULL */
    uint64_t *sent, *recvd; /* messages per peer (rank in this communicator) */
    uint64_t started, completed, target; /* collectives */
    int waiting;            /* threads held before starting one */
};
extern struct vcomm *C;     /* C[0] is MPI_COMM_WORLD, C[1] MPI_COMM_SELF, then creation order */
extern int ncomm;

extern int last_i;
static inline int idx(MPI_Comm v)
{
    if (last_i < ncomm && C[last_i].v == v && C[last_i].live) return last_i;
    for (int i = 0; i < ncomm; i++)
        if (C[i].v == v && C[i].live) return last_i = i;
    return -1;
}
/* the real handle of a virtual one; an unknown handle passes unchanged */
static inline MPI_Comm R(MPI_Comm v)
{
    int i = idx(v);
    return i < 0 ? v : C[i].r;
}
/* a message received on communicator ci, counted per peer (for the bookmark exchange) */
static inline void count_recv(int ci, const MPI_Status *st)
{
    if (ci >= 0 && st->MPI_SOURCE >= 0 && st->MPI_SOURCE < C[ci].size) C[ci].recvd[st->MPI_SOURCE]++;
}

int add_comm(void);
/* size, counters and the layer's twin of a communicator just made (collective over it) */
int comm_ready(int i);
/* world and self of a new session (the first time: their entries) */
int comm_predefined(MPI_Comm world, MPI_Comm self);
/* every real communicator and twin freed, before the session is finalized */
void comm_teardown(void);
/* after a new session: made again in creation order, error handlers set again */
int comm_replay(void);

/* ---- tracked requests (request.c) -----------------------------------------------------------
 * Every request a wrapped call makes, the application's and the layer's own (a blocking call's),
 * so that the protocol can complete, drain, cancel and post them again. The application keeps
 * the handle it was given; `real` is this incarnation's. */
enum rkind { RQ_SEND, RQ_RECV, RQ_COLL, RQ_MRECV, RQ_OTHER, RQ_REFUSED };
struct treq {
    int used, kind, comm, internal;
    MPI_Request app, real;
    int peer, tag;                     /* a receive as posted (for the repost) */
    void *buf; MPI_Count count; MPI_Datatype type;
    int done, repost;
    MPI_Status st;
    const char *made_by;
};
extern struct treq *T;
extern int nT, liveT;
/* The application's handles of tracked requests and matched messages are the layer's, never
 * MPICH's: MPICH hands the same values out again (after a rebuild, certainly), and a request
 * posted again has a new real handle under the old one. Kind bits 00: MPICH makes none such. */
extern unsigned layer_handles;
#define LAYER_REQUEST(n) ((MPI_Request)(0x2e000000 | ((n) & 0x00ffffff)))
#define LAYER_MESSAGE(n) ((MPI_Message)(0x2d000000 | ((n) & 0x00ffffff)))

int treq_new(int kind, int comm, MPI_Request real);
static inline int treq_find(MPI_Request app)
{
    if (!liveT || app == MPI_REQUEST_NULL) return -1;
    for (int k = 0; k < nT; k++)
        if (T[k].used && !T[k].internal && T[k].app == app) return k;
    return -1;
}
void treq_free(int k);

/* A status as MPI fills it: MPI_Test, MPI_Wait and MPI_Mrecv leave MPI_ERROR as it was (the
 * standard sets it only with MPI_ERR_IN_STATUS), and the layer reads MPI_ERROR of the statuses it
 * keeps; stack garbage there (14 is MPI_ERR_TRUNCATE) once failed a good receive. */
#define FRESH_STATUS {.MPI_SOURCE = MPI_ANY_SOURCE, .MPI_TAG = MPI_ANY_TAG, .MPI_ERROR = MPI_SUCCESS}
void completed(int k, const MPI_Status *st);
/* test one tracked request (gate held): 1 when it is complete */
int poll_one(int k, int *rc);
static inline void give_status(MPI_Status *to, const MPI_Status *from)
{
    if (to != MPI_STATUS_IGNORE) *to = *from;
}

/* ---- messages received into the layer (message.c) -------------------------------------------
 * Drained at a cut (stored), or held by a matched probe (the application's MPI_Message). */
struct stored { int used, comm, source, tag; char *data; MPI_Count len; };
extern struct stored *M;
extern int nM, liveM;
int store_add(int comm, int source, int tag, char *data, MPI_Count len);
/* the oldest stored message that a receive of (source, tag) on communicator ci matches */
int store_match(int ci, int source, int tag);
MPI_Count status_bytes(const MPI_Status *st);
int status_cancelled(const MPI_Status *st);
void store_status(int m, MPI_Status *st);
/* deliver stored message m into (buf, count, type) and forget it */
int store_take(int m, void *buf, MPI_Count count, MPI_Datatype type, MPI_Status *st);

/* matched probes the application holds (MPI_Message), so that a cut can receive them first */
struct held { int used, comm, stored; MPI_Message app, real; MPI_Status st; };
extern struct held *H;
extern int nH;
int held_add(int comm, MPI_Message real, const MPI_Status *st);
int held_find(MPI_Message app);

/* ---- attributes and keyvals (attr.c) ------------------------------------------------------- */
void attrs_copy(int from, int to);
/* a Split's attributes, copied with the rest by attrs_copy, deleted again */
void attrs_split_drop(int c);
void attrs_delete_all(int c);
void attrs_delete_everywhere(void);

/* ---- objects the layer cannot bring back (unsupported.c, recorded by the generated wrappers) */
void unsupported_made(const char *kind, long handle, const char *made_by);
void unsupported_gone(const char *kind, long handle);
/* MPICH: predefined handles have kind bits 01; they are not the application's objects */
static inline int is_object(long h) { return ((unsigned long)h >> 30 & 3) >= 2; }
/* the first reason this rank cannot be saved, or NULL */
const char *refusal(char *buf, int len);

#endif
