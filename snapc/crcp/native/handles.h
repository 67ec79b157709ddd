/* handles.h: the objects the layer keeps for the application, one section per kind, each kind
 * in its own unit (included by layer.h, inside its hidden-visibility block).
 *
 * Every handle the application holds is one the layer made (or a predefined one, the same in
 * every incarnation of MPI): MPICH hands its own values out again after a rebuild, and an object
 * made again in a new session has a new real handle under the old one. The layer's values have
 * MPICH's object-type bits and kind bits 00, which MPICH never makes (handles.h: LAYER_HANDLE);
 * the table slot is in the low bits, so a translation is an index. Such values survive the
 * integer and Fortran conversions unchanged (MPICH's c2f/f2c/toint/fromint are the identity for
 * integer handles); files, which are pointers in MPICH, have conversions of the layer's.
 *
 * Kinds, and what the layer keeps to make each again after a rebuild:
 *   communicators (comm.c, commnew.c, topo.c)  their group(s) of world ranks, topology, info,
 *                   name, error handler; made again from their groups (no parent needed);
 *   groups (group.c)          lists of world ranks, kept by the layer; a real group is made
 *                             for a call that needs one;
 *   datatypes (datatype.c), ops (op.c), persistent requests (request.c)  the constructor's
 *                             arguments, recorded by the generated wrappers (record.c), replayed
 *                             in creation order, freed ancestors included;
 *   error handlers (errhandler.c), info objects (info.c), keyvals and attributes (attr.c),
 *   generalized requests (request.c), the application's sessions (appsession.c)  kept by the
 *                             layer only, nothing to make again;
 *   windows (win.c), files (file.c)  their arguments, group, epoch or view and pointers;
 *   tracked requests (request.c), messages held (message.c).
 * What cannot be made again is named at checkpoint time (refusal.c). */
#ifndef CRCP_HANDLES_H
#define CRCP_HANDLES_H

/* ---- handle values ------------------------------------------------------------------------ */
/* MPICH: bits 31-30 the kind (00 invalid, 01 builtin, 10 direct, 11 indirect), 29-26 the object
 * type. The layer's: kind 00, the type bits, bit 25 set, the slot below. */
#define LAYER_BIT   0x02000000u
#define LAYER_SLOTS 0x01ffffffu
#define TYPE_BITS(null) ((unsigned)(null) & 0x3c000000u)
#define LAYER_HANDLE(null, slot) ((int)(TYPE_BITS(null) | LAYER_BIT | (unsigned)(slot)))
static inline int layer_slot(unsigned h, unsigned null)
{
    return (h & 0xfe000000u) == (TYPE_BITS(null) | LAYER_BIT) ? (int)(h & LAYER_SLOTS) : -1;
}
static inline int builtin_handle(unsigned h) { return (h >> 30) == 1; }

/* a growable table of entries whose first member is `int used` (entries move when it grows) */
struct table { char *e; size_t size; int n, cap, live, hint; };
int table_add(struct table *t);
void table_del(struct table *t, int slot);
#define ENTRY(t, type, i) (&((type *)(t).e)[i])

/* ---- errors (errhandler.c) ---------------------------------------------------------------
 * Every real object returns errors to the layer (MPI_ERRORS_RETURN); the layer raises them on
 * the error handler the application set, as MPI would: on the call's communicator, window,
 * file or session, else on the default one (MPI_COMM_SELF's, else MPI_COMM_WORLD's, else fatal).
 * slot -1: no valid object (a file's: MPI_FILE_NULL's handler). Returns the code to return. */
enum obj { OBJ_NONE, OBJ_COMM, OBJ_WIN, OBJ_FILE, OBJ_SESSION };
int raise_error(int obj, int slot, int code, const char *fn);
/* error handlers the layer keeps (predefined ones are their own values) */
struct verrh { int used, refs, kind; void (*fn)(void); };
int errh_valid(MPI_Errhandler e, int kind);
void errh_ref(MPI_Errhandler e, int delta);
MPI_Errhandler file_default_eh(void);

/* ---- communicators (comm.c) ---------------------------------------------------------------
 * An entry is a collective context: an application's communicator (app != 0), or the context of
 * a window or file (its collectives counted for the cut, its group kept for the rebuild). Each
 * has an id its members agree on without communicating (a hash of its group(s) and of how many
 * contexts with the same group(s) each has made before), used by the cut and as the tag of the
 * rebuild's MPI_Comm_create_from_group. */
enum ckind { K_WORLD, K_SELF, K_COMM, K_CART, K_GRAPH, K_DIST, K_WINCTX, K_FILECTX };
struct vcomm {
    int used, app;          /* app: the application holds it (not freed by it) */
    MPI_Comm v, r;          /* the application's handle, this incarnation's real one */
    int kind, inter;
    uint64_t id;
    int size, rank, rsize;  /* rsize: remote group's size (intercommunicators) */
    int *wr, *rwr;          /* world ranks of the (local) group and of the remote group */
    int holds;              /* persistent requests on it: kept (and made again) while > 0 */
    int foreign;            /* has processes outside this job's world (spawned, connected) */
    int pending, parent;    /* MPI_Comm_idup not complete yet, and its parent */
    const char *made_by;
    /* topology, for the rebuild */
    int ndims, *dims, *periods;          /* Cartesian */
    int zerod;              /* of zero dimensions: its topology is the layer's (topo.c) */
    int nnodes, *index, nedges, *edges;  /* graph */
    int indeg, outdeg, weighted, *srcs, *sw, *dsts, *dw;  /* distributed graph (this rank's) */
    int info;               /* hints (an info of info.c, or -1), given again at the rebuild */
    char *name;             /* set by the application (NULL: MPI's) */
    MPI_Errhandler eh;      /* the application's (MPI_ERRHANDLER_NULL: none set) */
    uint64_t *sent, *recvd; /* messages per peer (rank in the remote group for an intercomm) */
    uint64_t started, completed, target; /* collectives */
    int waiting;            /* threads held before starting one */
};
extern struct vcomm *C;     /* C[0] is MPI_COMM_WORLD, C[1] MPI_COMM_SELF */
extern int ncomm;

/* the application's communicator v (-1: not one the application holds) */
static inline int idx(MPI_Comm v)
{
    if (v == MPI_COMM_WORLD) return 0;
    if (v == MPI_COMM_SELF) return 1;
    int s = layer_slot((unsigned)v, (unsigned)MPI_COMM_NULL);
    return (s >= 0 && s < ncomm && C[s].used && C[s].app) ? s : -1;
}
/* also one the application freed but the layer keeps (held by a persistent request) */
static inline int idx_any(MPI_Comm v)
{
    if (v == MPI_COMM_WORLD) return 0;
    if (v == MPI_COMM_SELF) return 1;
    int s = layer_slot((unsigned)v, (unsigned)MPI_COMM_NULL);
    return (s >= 0 && s < ncomm && C[s].used && C[s].v == v) ? s : -1;
}
/* the real handle of an application's communicator; MPI_COMM_NULL passes, else MPI_ERR_COMM */
static inline int comm_in(MPI_Comm v, MPI_Comm *r)
{
    if (v == MPI_COMM_NULL) { *r = MPI_COMM_NULL; return MPI_SUCCESS; }
    int i = idx(v);
    if (i < 0) return MPI_ERR_COMM;
    *r = C[i].r;
    return MPI_SUCCESS;
}
/* the real handle, or the value itself (the layer's own calls with a known communicator) */
static inline MPI_Comm R(MPI_Comm v)
{
    int i = idx(v);
    return i < 0 ? v : C[i].r;
}
/* peers of a collective's arrays: size, remote size, or in/out degree of a topology */
int coll_peers(int ci, int neighbor, int send);
/* a message received on communicator ci, counted per peer (for the bookmark exchange) */
static inline void count_recv(int ci, const MPI_Status *st)
{
    int peers = C[ci].inter ? C[ci].rsize : C[ci].size;
    if (ci >= 0 && st->MPI_SOURCE >= 0 && st->MPI_SOURCE < peers) C[ci].recvd[st->MPI_SOURCE]++;
}

/* a new entry for real communicator r, made by fn from parent (collective context, errhandler
 * inherited from it; -1 none): group(s), id, counters. Returns the slot, or -1 with *rc set. */
int comm_new(MPI_Comm r, int parent, int kind, const char *fn, int *rc);
/* the application's handle of entry i */
MPI_Comm comm_handle(int i);
/* a context for a window or a file over real communicator r (kind K_WINCTX/K_FILECTX) */
int ctx_new(MPI_Comm r, int kind, int *rc);
void ctx_free(int ci);
void comm_hold(MPI_Comm v, int delta);
/* MPI_Comm_idup: an entry now for a communicator complete later (comm_finish) */
int comm_pending(MPI_Comm r, int parent, const char *fn);
void comm_finish(int i);
/* world and self of a new session (the first time: their entries) */
int comm_predefined(MPI_Comm world, MPI_Comm self);
void comm_teardown(void);
int comm_replay(void);
/* a communicator over the world ranks wr[0..n) made for a rebuild, with tag id */
int comm_from_ranks(const int *wr, int n, uint64_t id, const char *what, MPI_Comm *out);
/* zombies: contexts freed by this rank whose counts the cut still needs (cut.c prunes them) */
struct zombie { uint64_t id; uint64_t started; };
extern struct zombie *Z;
extern int nZ;
void zombie_add(int ci);
void comm_dropped(int i);
const char *comm_refusal(char *buf, int len);

/* ---- groups (group.c) ----------------------------------------------------------------------
 * Lists of world ranks; a real group is made for a call that needs one (group_in, freed by
 * group_done), and one MPI returns becomes the layer's (group_got). A group with processes
 * outside the world (spawned, connected) keeps its real group and cannot be made again. */
struct vgroup { int used, refs, n; int *wr; MPI_Group foreign; };
int group_in(MPI_Group v, MPI_Group *r);
void group_done(MPI_Group *r);
MPI_Group group_got(MPI_Group r);
/* the world ranks of real group r (*n; NULL: some process is outside the world) */
int *group_ranks(MPI_Group r, int *n);
/* a real group of world ranks */
int group_of_ranks(const int *wr, int n, MPI_Group *out);
void group_ref(MPI_Group v);
MPI_Group world_group(void);      /* this incarnation's, kept until teardown */
void group_teardown(void);
const char *group_refusal(void);

/* ---- info objects (info.c): kept by the layer, a real one made for a call ---- */
int info_in(MPI_Info v, MPI_Info *r);
void info_done(MPI_Info *r);
MPI_Info info_got(MPI_Info r);
/* the layer's own copy (for a record or an object's hints; -1/MPI_INFO_NULL for none) */
MPI_Info info_keep(MPI_Info v);
void info_unkeep(MPI_Info kept);
int info_slot_keep(MPI_Info v);           /* a slot of a copy, -1 for MPI_INFO_NULL */
int info_real_of_slot(int slot, MPI_Info *r);
void info_slot_drop(int slot);
int info_slot_merge(int slot, MPI_Info v);  /* keys of v set in the copy (a new one if -1) */
int info_slot_from_real(MPI_Info r);
MPI_Info info_handle_copy(int slot);     /* the application's new info, a copy of slot (-1: empty) */        /* a copy of real info r (freed), -1 on failure */

/* ---- records (record.c) -------------------------------------------------------------------
 * The arguments of a constructor (datatype, op, persistent request), written by the generated
 * wrappers; replayed in creation order after a rebuild. */
struct rec {
    struct rec *prev, *next;
    int (*replay)(struct rec *, void *made);
    void (*drop)(struct rec *);
    const char *made_by;
    int kind, slot;        /* the object made: REC_TYPE, REC_OP or REC_REQUEST, and its slot */
};
enum { REC_TYPE = 1, REC_OP, REC_REQUEST };
void *rec_new(size_t size, int (*replay)(struct rec *, void *), void (*drop)(struct rec *),
              const char *made_by);
void *rec_copy(const void *p, size_t n);
void rec_forget(struct rec *r);   /* unlinked, its objects let go, freed */
int rec_replay_all(void);
int type_remake(struct rec *r);
int op_remake(struct rec *r);
int request_remake(struct rec *r);
void type_replayed(void);   /* freed again: what was made again only for others */
void op_replayed(void);

/* ---- datatypes (datatype.c) ---------------------------------------------------------------- */
#define TYPE_PREDEFINED 1   /* a named predefined type made on demand (f90): never freed */
struct vtype {
    int used, refs, holds, flags, committed;
    int real_freed;         /* the application freed it: r is MPI's until others let go of it */
    MPI_Datatype v, r;
    struct rec *rec;        /* how it was made (NULL: returned by MPI for one it knows) */
    char *name;             /* set by the application */
};
extern struct table TT;
int type_in(MPI_Datatype v, MPI_Datatype *r, int strict);
int types_in(const MPI_Datatype *v, int n, MPI_Datatype **r);
MPI_Datatype type_made(MPI_Datatype r, struct rec *rec, int flags);
MPI_Datatype type_got(MPI_Datatype r);
void type_hold(MPI_Datatype v, int delta);
MPI_Datatype type_ref(MPI_Datatype v);
int type_slot(MPI_Datatype v);
int type_predefined(MPI_Datatype v);
void type_teardown(void);
const char *type_refusal(void);

/* ---- ops (op.c) ---- */
struct vop { int used, refs, holds, real_freed; MPI_Op v, r; struct rec *rec; };
extern struct table OT;
int op_in(MPI_Op v, MPI_Op *r, int strict);
MPI_Op op_made(MPI_Op r, struct rec *rec);
void op_hold(MPI_Op v, int delta);
void op_teardown(void);

/* ---- windows (win.c) ----------------------------------------------------------------------- */
enum wflavor { WF_CREATE, WF_ALLOCATE, WF_SHARED, WF_DYNAMIC };
struct vwin {
    int used, ctx, flavor;
    MPI_Win v, r;
    void *base; MPI_Aint size; int disp_unit;
    int info;               /* hints (info.c slot, -1 none) */
    char *name;
    MPI_Errhandler eh;
    int fence;              /* inside a fence epoch (a fence done, not MPI_MODE_NOSUCCEED) */
    int lock_all;           /* MPI_Win_lock_all held */
    int *locks;             /* per target rank: 0, MPI_LOCK_SHARED+1 or MPI_LOCK_EXCLUSIVE+1 */
    MPI_Group post_group, start_group;  /* PSCW epochs open (layer groups) */
    int blocked;            /* threads inside a blocking synchronization */
    struct { void *base; MPI_Aint size; } *attached; int nattached;
    const char *made_by;
};
extern struct vwin *W;
extern int nwin;
static inline int win_idx(MPI_Win v)
{
    int s = layer_slot((unsigned)v, (unsigned)MPI_WIN_NULL);
    return (s >= 0 && s < nwin && W[s].used) ? s : -1;
}
void win_close_epochs(void);
int win_remake(int i);
void win_teardown(void);
int win_replay(void);
const char *win_refusal(void);

/* ---- files (file.c) ------------------------------------------------------------------------ */
struct vfile {
    int used, ctx;
    MPI_File r;
    char *filename; int amode;
    int info;
    MPI_Offset disp; MPI_Datatype etype, filetype; char *datarep; int view_info;
    int atomic;
    MPI_Offset pos, shared_pos;   /* saved at teardown, in etype units of the view */
    MPI_Errhandler eh;
    int split;                    /* a split collective begun, not ended */
    const char *made_by;
};
extern struct vfile *F;
extern int nfile;
int file_idx(MPI_File v);
MPI_File file_handle(int slot);
int file_save(void);
void file_teardown(void);
int file_remake(int i);
/* windows and files made again in the order of their contexts' creation */
int objects_replay(void);
uint64_t comm_serial(int i);

/* ---- the application's sessions (appsession.c): kept by the layer, over its session ---- */
struct vsession { int used; MPI_Errhandler eh; int info; int thread; };
int session_idx(MPI_Session v);
MPI_Session session_handle(int slot);
MPI_Errhandler session_eh(int slot);
MPI_Errhandler *session_eh_ptr(int slot);
extern MPI_Session layer_session;

/* ---- attributes and keyvals (attr.c) ------------------------------------------------------- */
enum akind { A_COMM, A_TYPE, A_WIN };
int attrs_copy(int kind, long from, long to);
int attrs_delete_all(int kind, long obj);
void attrs_delete_everywhere(void);

/* ---- tracked requests (request.c) -----------------------------------------------------------
 * Every request a wrapped call makes, the application's and the layer's own (a blocking call's),
 * so that the protocol can complete, drain, cancel and post them again. The application keeps
 * the handle it was given; `real` is this incarnation's. */
enum rkind { RQ_SEND, RQ_RECV, RQ_COLL, RQ_MRECV, RQ_RMA, RQ_IO, RQ_OTHER, RQ_PERSIST, RQ_PCOLL,
             RQ_PART, RQ_GREQ, RQ_SENDRECV };
struct treq {
    int used, kind, comm, internal;
    MPI_Request app, real;
    int peer, tag;                     /* a receive as posted (for the repost) */
    void *buf; MPI_Count count; MPI_Datatype type;
    int done, repost, active;          /* active: a persistent request started */
    int partner;                       /* RQ_SENDRECV: the send's tracked request */
    int precv;                         /* a persistent receive */
    int newcomm;                       /* MPI_Comm_idup: the communicator it completes (-1) */
    int ownbuf;                        /* buf is the layer's (a packed copy), freed with it */
    int cancelling;                    /* MPI_Cancel was called on it: it may never be matched */
    int freed;                         /* MPI_Request_free'd before it completed (completion.c) */
    MPI_Status st;
    struct rec *rec;                   /* persistent: how it was made */
    /* generalized requests */
    MPI_Grequest_query_function *query; MPI_Grequest_free_function *gfree;
    MPI_Grequest_cancel_function *gcancel; void *extra;
    const char *made_by;
};
extern struct treq *T;
extern int nT, liveT;
#define LAYER_MESSAGE(n) ((MPI_Message)(0x2d000000 | ((n) & 0x00ffffff)))

int treq_new(int kind, int comm, MPI_Request real);
static inline int treq_find(MPI_Request app)
{
    int s = layer_slot((unsigned)app, (unsigned)MPI_REQUEST_NULL);
    return (s >= 0 && s < nT && T[s].used && !T[s].internal && T[s].app == app) ? s : -1;
}
void treq_free(int k);
int reap_freed(int ci); /* completion.c: the freed requests (on communicator ci; -1 all) still pending */
extern int nfreed;      /* requests the application freed that the layer still keeps */
int persistent(int k);
/* a send (a persistent one started): its message counts for the peer until it is cancelled */
static inline int is_send(int k) { return T[k].kind == RQ_SEND || (T[k].kind == RQ_PERSIST && !T[k].precv); }
int poll_one_plain(int k, int *rc);
int greq_finish(int k, MPI_Status *st);
void request_p2p(MPI_Request app, int recv, int peer, int tag, void *buf, MPI_Count count, MPI_Datatype type);
MPI_Request request_made(int kind, int ci, MPI_Request real, struct rec *rec, const char *fn);
int request_in(MPI_Request v, MPI_Request *r);
void request_teardown(void);
int request_replay(void);
const char *request_refusal(void);

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

/* ---- what the layer cannot bring back (refusal.c) ---- */
/* the first reason this rank cannot be saved, or NULL */
const char *refusal(char *buf, int len);

#endif
