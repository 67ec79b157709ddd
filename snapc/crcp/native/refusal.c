/* refusal.c: what the layer cannot bring back after a restart, named at checkpoint time (every
 * rank agrees on a refusal in the first round of the cut, the checkpoint fails, the job goes
 * on): communicators and groups that reach processes outside the job (spawned, connected),
 * shared-memory windows, active partitioned requests, and a datatype MPI returned that the layer
 * did not see made. */
#include "layer.h"

const char *refusal(char *buf, int len)
{
    const char *why;
    if ((why = comm_refusal(buf, len))) return why;
    if ((why = group_refusal()) || (why = win_refusal()) || (why = request_refusal()) || (why = type_refusal())) {
        snprintf(buf, len, "%s", why);
        return buf;
    }
    return NULL;
}
