/* unsupported.c: the objects the layer cannot bring back after a restart (groups, datatypes,
 * ops, error handlers, info, windows, files, sessions, communicators made otherwise than by Dup
 * and Split), recorded by the generated wrappers while they are live, and the refusal that names
 * the function that made one (or a request the layer cannot post again). */
#include "layer.h"

struct unsupported { int used; long handle; const char *kind, *made_by; };
static struct unsupported *U;
static int nU, capU;
void unsupported_made(const char *kind, long handle, const char *made_by)
{
    if (nU == capU) {
        capU = capU ? 2 * capU : 16;
        U = realloc(U, capU * sizeof *U);
        if (!U) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
    }
    U[nU++] = (struct unsupported){1, handle, kind, made_by};
}
void unsupported_gone(const char *kind, long handle)
{
    for (int u = 0; u < nU; u++)
        if (U[u].used && U[u].handle == handle && !strcmp(U[u].kind, kind)) { U[u].used = 0; return; }
}

/* the first reason this rank cannot be saved, or NULL */
const char *refusal(char *buf, int len)
{
    for (int u = 0; u < nU; u++)
        if (U[u].used) {
            snprintf(buf, len, "%s made by %s is live (the layer cannot bring it back after a "
                     "restart)", U[u].kind, U[u].made_by);
            return buf;
        }
    for (int k = 0; k < nT; k++)
        if (T[k].used && T[k].kind == RQ_REFUSED) {
            snprintf(buf, len, "a request made by %s is live (persistent and generalized "
                     "requests, one-sided and I/O operations cannot be brought back)", T[k].made_by);
            return buf;
        }
    return NULL;
}
