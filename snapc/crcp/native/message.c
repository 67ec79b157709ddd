/* message.c: messages in the layer's hands. Stored: received into the layer by the drain of a
 * cut (or taken by a matched probe), delivered first, oldest first, to the receives after it.
 * Held: matched probes the application holds (its MPI_Message is the layer's), received into the
 * store by a cut. And the byte count of MPICH's status, read without MPI. */
#include "layer.h"

struct stored *M;
int nM, liveM;
static int capM;

int store_add(int comm, int source, int tag, char *data, MPI_Count len)
{
    if (nM == capM) {
        capM = capM ? 2 * capM : 64;
        M = realloc(M, capM * sizeof *M);
        if (!M) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
    }
    M[nM] = (struct stored){1, comm, source, tag, data, len};
    liveM++;
    return nM++;
}
/* the oldest stored message that a receive of (source, tag) on communicator ci matches */
int store_match(int ci, int source, int tag)
{
    if (!liveM || ci < 0) return -1;
    for (int m = 0; m < nM; m++)
        if (M[m].used && M[m].comm == ci && (source == MPI_ANY_SOURCE || source == M[m].source)
            && (tag == MPI_ANY_TAG || tag == M[m].tag))
            return m;
    return -1;
}
/* MPICH's status holds the byte count and the cancelled bit itself; its functions that take no
 * handle (MPI_Get_count, MPI_Status_set_elements_x, MPI_Test_cancelled) refuse to run when
 * only sessions are initialized, which is the layer's case. */
MPI_Count status_bytes(const MPI_Status *st)
{
    return (MPI_Count)((uint64_t)(unsigned)st->count_lo | ((uint64_t)((unsigned)st->count_hi_and_cancelled >> 1) << 32));
}
int status_cancelled(const MPI_Status *st) { return st->count_hi_and_cancelled & 1; }
void store_status(int m, MPI_Status *st)
{
    st->MPI_SOURCE = M[m].source;
    st->MPI_TAG = M[m].tag;
    st->MPI_ERROR = MPI_SUCCESS;
    st->count_lo = (int)(M[m].len & 0xffffffff);
    st->count_hi_and_cancelled = (int)(((uint64_t)M[m].len >> 32) << 1);
}
/* deliver stored message m into (buf, count, type) and forget it */
int store_take(int m, void *buf, MPI_Count count, MPI_Datatype vtype, MPI_Status *st)
{
    MPI_Count size = 0;
    MPI_Datatype type;
    int rc = type_in(vtype, &type, 0);
    if (!rc) rc = PMPI_Pack_size_c(count, type, C[M[m].comm].r, &size);
    MPI_Count pos = 0;
    if (!rc && M[m].len > size) rc = MPI_ERR_TRUNCATE;
    if (!rc && M[m].len)
        rc = PMPI_Unpack_c(M[m].data, M[m].len, &pos, buf, count, type, C[M[m].comm].r);
    MPI_Status mine;
    store_status(m, &mine);
    mine.MPI_ERROR = rc;
    give_status(st, &mine);
    free(M[m].data);
    M[m].used = 0;
    liveM--;
    while (nM && !M[nM - 1].used) nM--;
    return rc;
}

struct held *H;
int nH;
static int capH;

int held_add(int comm, MPI_Message real, const MPI_Status *st)
{
    int h = 0;
    while (h < nH && H[h].used) h++;
    if (h == nH) {
        if (nH == capH) {
            capH = capH ? 2 * capH : 16;
            H = realloc(H, capH * sizeof *H);
            if (!H) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
        }
        nH++;
    }
    H[h] = (struct held){1, comm, -1, LAYER_MESSAGE(h), real, *st};
    return h;
}
int held_find(MPI_Message app)
{
    if (((unsigned)app & 0xff000000u) != 0x2d000000u) return -1;
    int h = (int)((unsigned)app & 0x00ffffffu);
    return h < nH && H[h].used && H[h].app == app ? h : -1;
}
