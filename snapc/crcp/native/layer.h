/* layer.h: the MPI layer's shared state and internal functions (crcp, libcrcp.so).
 *
 * The layer lets an mpi4py rank be saved as a process image (blcr or mtcp) at any moment and
 * brought back, in the same job or in a new one. Preloaded into each rank (LD_PRELOAD, by our
 * mpirun), it defines the MPI_* functions mpi4py calls and reaches MPICH through PMPI_*. Three
 * things make a rank restartable:
 *
 *  1. Handles that outlive MPI. The application's world is an MPI Session (the world model
 *     cannot be initialized twice). Every handle the application holds is one the layer made
 *     (handles.h), for every kind of object: communicators, groups, datatypes, ops, error
 *     handlers, info objects, keyvals and attributes, requests, messages, windows, files,
 *     sessions. After every rebuild the objects are made again (communicators from their
 *     groups, datatypes, ops and persistent requests from the records of their constructors,
 *     windows over the same memory, files opened again with their view and pointers); what is
 *     only the layer's (groups, info, error handlers, attributes) needs nothing made again.
 *  2. A consistent cut at any moment (crcp_quiesce, called on a thread of the rank's app
 *     coordinator while the application thread is wherever it is). Blocking calls are
 *     nonblocking ones completed in a loop that lets the protocol in, or run without the
 *     layer's lock. The ranks agree on how many collectives each collective context
 *     (communicator, window, file) has started (the maximum), every rank runs on until it has
 *     completed that many and starts no more, then the application threads are held, the
 *     per-peer message counts are exchanged and every message in flight is received into the
 *     layer (Open MPI's bookmark exchange); the layer delivers those first afterwards.
 *  3. Teardown and rebuild. After the cut, one-sided epochs are closed, file pointers saved,
 *     every real object freed and the session finalized: the image holds no MPI state (the
 *     launcher's PMI descriptor, kept open, is left out of it). crcp_resume makes a new session
 *     (after a restart it first adopts the new launcher's environment and PMI descriptor from
 *     its parent, the opal-restart the new launcher started) and rebuilds the objects.
 *
 * What the layer cannot bring back is refused at checkpoint time with its name (refusal.c):
 * communicators and groups reaching processes outside the job (spawned, connected), shared-memory
 * windows, active partitioned requests. The generated part (crcp_wrappers.inc, by generate.py
 * from the MPI standard's API description and MPICH's mpi_proto.h) wraps every function no unit
 * defines: handles translated, constructors recorded, blocking collectives made nonblocking.
 *
 * MPICH only: handles are ints (files: pointers), MPICH 4+ can finalize and re-initialize
 * sessions, and the layer changes two things inside MPICH (mpich.c).
 *
 * The units, one concern each (every one includes this header):
 *   gate.c        the lock every wrapped call holds, the phases of a checkpoint, the GIL
 *   init.c        MPI_Init / MPI_Finalize: the application's world made a session
 *   table.c       the growable tables of the object kinds
 *   comm.c        communicators and collective contexts: ids, groups, teardown, made again
 *   commnew.c     every constructor of communicators, and their free, names, hints
 *   topo.c        the Cartesian communicators of zero dimensions the layer makes itself
 *   spawn.c       communicators to processes outside the job (spawn, connect, join, parent)
 *   group.c       groups: lists of world ranks, and their operations
 *   info.c        info objects, kept by the layer
 *   errhandler.c  error handlers, kept by the layer, and the raising of every error
 *   datatype.c    datatypes: made again from their records, names
 *   op.c          user ops: made again from their records
 *   record.c      the records of constructors, replayed in creation order
 *   attr.c        keyvals and attributes of communicators, datatypes and windows
 *   win.c         one-sided windows: memory, epochs, made again over the same memory
 *   file.c        MPI-IO files: opened again with their view and pointers
 *   appsession.c  the application's own sessions
 *   request.c     tracked requests (persistent and generalized ones too)
 *   message.c     messages the layer holds: drained at a cut, or matched by a probe
 *   refusal.c     what the layer cannot bring back, named at checkpoint time
 *   p2p.c         sends, receives, probes and matched receives
 *   completion.c  MPI_Test / MPI_Wait and their kin, cancel, request free, start
 *   collective.c  collectives and blocking calls admitted against the cut
 *   cut.c         the rounds that agree on a cut of the collectives
 *   drain.c       the bookmark exchange: every message in flight received into the layer
 *   session.c     the MPI session: up, torn down, objects rebuilt, what MPICH leaves behind
 *   launcher.c    the launcher's descriptors, and adopting a new launcher after a restart
 *   mpich.c       MPICH's own error raising and ROMIO's world and self, under a session
 *   finalize_stack.c  MPICH's stack of finalize callbacks, emptied after every teardown
 *   control.c     crcp_quiesce / crcp_resume / crcp_stats: what the app coordinator calls
 *   wrappers.c    the generated wrappers of every other MPI function (crcp_wrappers.inc)
 *
 * Only the MPI_* functions (and MPICH's own that mpich.c redefines) and the crcp_* control
 * functions are exported (EXPORT); everything declared here is internal to the library. */
#ifndef CRCP_LAYER_H
#define CRCP_LAYER_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* the layer's own symbols stay inside libcrcp.so (and are reached without the GOT) */
#pragma GCC visibility push(hidden)

static inline double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* ---- the gate (gate.c) ----------------------------------------------------------------------
 * Every wrapped call holds it while it touches the layer's tables or calls MPI; blocking calls
 * let go of it between the tests of their loop. `phase` says where a checkpoint is:
 * 0 none, 1 the ranks agree on the collective counts, 2 every rank completes that many,
 * 3 application threads are held (the drain, the image, the rebuild). Recursive: attribute
 * delete callbacks (mpi4py's) call MPI from inside a wrapped call. */
extern pthread_mutex_t gate;
extern pthread_cond_t wake;
extern volatile int phase;
extern volatile int protocol_wants_gate;

/* A thread held by the protocol must not keep the Python GIL: the app coordinator that runs
 * the protocol is Python too. */
extern int (*gil_held)(void);
extern void *(*gil_release)(void);
extern void (*gil_take)(void *);
void find_python(void);

/* Wait on `wake` (gate held) while cond holds; the GIL is given up for the wait, and taken
 * back without the gate (whoever holds the gate may be waiting for the GIL), so the condition
 * is looked at again after that. */
#define HOLD_WHILE(cond) do { \
        while (cond) { \
            void *ts_ = gil_held && gil_held() ? gil_release() : NULL; \
            while (cond) pthread_cond_wait(&wake, &gate); \
            if (ts_) { pthread_mutex_unlock(&gate); gil_take(ts_); pthread_mutex_lock(&gate); } \
        } \
    } while (0)

static inline void enter(void)
{
    pthread_mutex_lock(&gate);
    if (phase == 3) HOLD_WHILE(phase == 3);
}
static inline void leave(void) { pthread_mutex_unlock(&gate); }

/* between two tests of a blocking call's loop */
void loop_pause(void);

/* a blocking communicator-making call: counted as a collective, run without the gate so that
 * the protocol (which its peers may be waiting for) can go on beside it */
#define UNGATED(call) do { pthread_mutex_unlock(&gate); call; pthread_mutex_lock(&gate); } while (0)

/* ---- the layer's life (init.c) ---- */
extern int state; /* 0 never initialized, 1 up, 2 torn down, 3 finalized */
extern int rebuilding; /* the application's objects are being made again (state is still 2) */
extern int thread_asked;
extern int verbose;

/* ---- the handle tables of every object kind the layer virtualizes ---- */
#include "handles.h"

/* ---- point to point (p2p.c) ---- */
/* post a receive for tracked request k (from the store if a held message matches) */
int post_recv(int k);

/* ---- collectives (collective.c) ---- */
int coll_admit(int ci);
int coll_wait(int ci, MPI_Request r);
/* a blocking call collective over a group only, or waiting on other ranks without a collective:
 * the cut waits until no thread is inside one (inside), and holds them while ranks agree */
void blocking_admit(void);
void blocking_done(void);
extern int inside, waiting_blocking;
int context_alone(int ci); /* a context of this rank alone: never counted, never held */

/* ---- the checkpoint protocol (cut.c, drain.c, control.c) ---- */
extern double stat_cut, stat_drain, stat_teardown, stat_rebuild, stat_msgs, stat_bytes;
/* what the rounds of the cut agreed on (cut.c) */
struct cut_outcome { int all_done, any_late, any_refused; };
int cut_rounds(int timeout_ms, double t0, int mine_refused, struct cut_outcome *out);
int drain(double deadline, char *err, int errlen); /* deadline: now() clock, 0 = none */
int drain_others(char *err, int errlen);
int protocol_wait(int n, MPI_Request *rs);
/* an MPI error code as the one-line message the app coordinator shows; returns -1 */
int mpi_error(int rc, char *err, int errlen, const char *what);

/* ---- the session (session.c) ---- */
int session_up(void);
int teardown(void);
int rebuild(void);
extern MPI_Comm proto_comm;
void close_mpi_leftovers(void);
void finalize_stack_empty(void); /* finalize_stack.c */

/* ---- the launcher (launcher.c) ---- */
int adopt_launcher(pid_t from, char *err, int errlen);

#pragma GCC visibility pop

#endif
