/* collective.c: collectives admitted against the cut (counted per collective context, held
 * while the ranks agree on a cut or once this rank has started as many as it allows), the
 * layer's completion of the nonblocking collective a blocking one is made of, and the blocking
 * calls that are collective over a group only or wait on other ranks without a collective
 * (MPI_Comm_create_group, passive-target synchronization...): the cut waits until no thread is
 * inside one, and none starts while the ranks agree. */
#include "layer.h"

int inside;

/* A rank may start a collective unless a cut is being agreed (phase 1) or it has already
 * started as many on that context as the cut allows (phase 2): the cut is then exactly
 * `target` collectives on every context, for every member. */
int coll_admit(int ci)
{
    if (ci < 0) return 0;
    if (context_alone(ci)) { /* waits on nobody: no cut needs its count */
        HOLD_WHILE(phase == 3);
        C[ci].started++;
        return 0;
    }
    C[ci].waiting++;
    HOLD_WHILE(phase == 1 || phase == 3 || (phase == 2 && C[ci].started >= C[ci].target));
    C[ci].waiting--;
    C[ci].started++;
    return 0;
}
/* complete a collective the layer started for a blocking call */
int coll_wait(int ci, MPI_Request r)
{
    int k = treq_new(RQ_COLL, ci, r), rc = MPI_SUCCESS;
    T[k].internal = 1;
    while (!poll_one(k, &rc)) loop_pause();
    treq_free(k);
    return rc;
}
void blocking_admit(void)
{
    waiting_blocking++;
    HOLD_WHILE(phase == 1 || phase == 3);
    waiting_blocking--;
    inside++;
}
void blocking_done(void) { inside--; }
int waiting_blocking;

/* a context of this rank alone (a duplicate of MPI_COMM_SELF, a window or file on one): its
 * collectives wait on no other rank, so any count of them is a consistent cut */
int context_alone(int ci)
{
    return !C[ci].inter && C[ci].size == 1;
}
