/* collective.c: collectives admitted against the cut (counted per communicator, held while
 * the ranks agree on a cut or once this rank has started as many as it allows), and the
 * layer's completion of the nonblocking collective a blocking one is made of. */
#include "layer.h"

/* A rank may start a collective unless a cut is being agreed (phase 1) or it has already
 * started as many on that communicator as the cut allows (phase 2): the cut is then exactly
 * `target` collectives on every communicator, for every member. */
int coll_admit(int ci)
{
    if (ci < 0) return 0;
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
void coll_track(int ci, MPI_Request *r, const char *fn)
{
    int k = treq_new(RQ_COLL, ci, *r);
    T[k].made_by = fn;
    *r = T[k].app = LAYER_REQUEST(++layer_handles);
}
