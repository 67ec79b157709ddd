/* gate.c: the gate every wrapped call holds, the phase of a checkpoint that the application's
 * threads wait on, the Python GIL a held thread gives up, and the pause between two tests of a
 * blocking call's loop (layer.h has enter/leave and HOLD_WHILE). */
#include "layer.h"

pthread_mutex_t gate = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
volatile int phase;
volatile int protocol_wants_gate;

int (*gil_held)(void);
void *(*gil_release)(void);
void (*gil_take)(void *);

void find_python(void)
{
    gil_held = (int (*)(void))dlsym(RTLD_DEFAULT, "PyGILState_Check");
    gil_release = (void *(*)(void))dlsym(RTLD_DEFAULT, "PyEval_SaveThread");
    gil_take = (void (*)(void *))dlsym(RTLD_DEFAULT, "PyEval_RestoreThread");
    int (*up)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    if (!up || !up() || !gil_release || !gil_take) gil_held = NULL;
}

/* between two tests of a blocking call's loop */
void loop_pause(void)
{
    if (phase == 3) { HOLD_WHILE(phase == 3); return; }
    static __thread unsigned spins;
    pthread_mutex_unlock(&gate);
    /* as MPICH's own blocking calls do: give the core away now and then (ranks oversubscribe
     * cores), and at once when the protocol waits for the gate */
    if (protocol_wants_gate || ++spins % 64 == 0) sched_yield();
    pthread_mutex_lock(&gate);
    HOLD_WHILE(phase == 3); /* the protocol may have torn MPI down meanwhile */
}
