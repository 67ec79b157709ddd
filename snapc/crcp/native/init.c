/* init.c: the application's MPI_Init / MPI_Finalize and their queries. The world model is
 * never initialized: the application's world is a session of the layer's (session.c), made at
 * MPI_Init, always MPI_THREAD_MULTIPLE (the protocol runs beside the application's threads). */
#include "layer.h"

int state; /* 0 never initialized, 1 up, 2 torn down, 3 finalized */
int rebuilding;
int thread_asked = MPI_THREAD_SINGLE;
int verbose;

static int layer_init(int required, int *provided)
{
    if (state != 0) return MPI_ERR_OTHER;
    /* mpi4py loads libmpi privately (RTLD_LOCAL): make it visible to our PMPI_* references */
    if (!dlopen("libmpi.so.12", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD)) {
        fprintf(stderr, "crcp: MPICH's libmpi.so.12 is not loaded in this process (the layer "
                "works with MPICH only): %s\n", dlerror());
        return MPI_ERR_OTHER;
    }
    find_python();
    verbose = getenv("PYCRS_CRCP_VERBOSE") != NULL;
    thread_asked = required < MPI_THREAD_SINGLE ? MPI_THREAD_SINGLE
                 : required > MPI_THREAD_MULTIPLE ? MPI_THREAD_MULTIPLE : required;
    pthread_mutex_lock(&gate);
    int rc = session_up();
    if (!rc) state = 1;
    pthread_mutex_unlock(&gate);
    if (provided) *provided = thread_asked;
    return rc;
}
EXPORT int MPI_Init(int *argc, char ***argv) { (void)argc; (void)argv; return layer_init(MPI_THREAD_SINGLE, NULL); }
EXPORT int MPI_Init_thread(int *argc, char ***argv, int required, int *provided)
{
    (void)argc; (void)argv;
    return layer_init(required, provided);
}
EXPORT int MPI_Initialized(int *flag) { *flag = state != 0; return MPI_SUCCESS; }
EXPORT int MPI_Finalized(int *flag) { *flag = state == 3; return MPI_SUCCESS; }
EXPORT int MPI_Query_thread(int *p) { *p = thread_asked; return MPI_SUCCESS; }
EXPORT int MPI_Is_thread_main(int *flag) { *flag = 1; return MPI_SUCCESS; }

EXPORT int MPI_Finalize(void)
{
    enter();
    coll_admit(0); /* a finalize waits for a checkpoint under way, which needs this rank */
    attrs_delete_everywhere();
    int rc = MPI_SUCCESS;
    if (state == 1) rc = teardown();
    state = 3;
    leave();
    return rc;
}
EXPORT int MPI_Abort(MPI_Comm comm, int code) { return PMPI_Abort(R(comm), code); }
