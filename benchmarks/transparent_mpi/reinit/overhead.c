/* overhead.c: the per-call cost of the layer, without Python: ns per MPI_Comm_rank (a pure
 * handle translation), 8 B ping-pong half round trip (us); run with and without libvmpi. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
    int r, x = 0, n = 2000000;
    char b[8] = {0};
    MPI_Comm W = MPI_COMM_WORLD;
    MPI_Session s = MPI_SESSION_NULL;
    if (getenv("OVERHEAD_SESSION")) { /* no layer, but a communicator made from a session, as the layer does */
        MPI_Group g;
        MPI_Session_init(MPI_INFO_NULL, MPI_ERRORS_ARE_FATAL, &s);
        MPI_Group_from_session_pset(s, "mpi://WORLD", &g);
        MPI_Comm_create_from_group(g, "o", MPI_INFO_NULL, MPI_ERRORS_ARE_FATAL, &W);
    } else
        MPI_Init(&argc, &argv);
    MPI_Comm_rank(W, &r);
    double best = 1e9, bestpp = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = MPI_Wtime();
        for (int i = 0; i < n; i++) MPI_Comm_rank(W, &x);
        double t = (MPI_Wtime() - t0) / n * 1e9;
        if (t < best) best = t;
        MPI_Barrier(W);
        int k = 50000;
        t0 = MPI_Wtime();
        for (int i = 0; i < k; i++) {
            if (r == 0) { MPI_Send(b, 8, MPI_BYTE, 1, 1, W); MPI_Recv(b, 8, MPI_BYTE, 1, 1, W, MPI_STATUS_IGNORE); }
            else { MPI_Recv(b, 8, MPI_BYTE, 0, 1, W, MPI_STATUS_IGNORE); MPI_Send(b, 8, MPI_BYTE, 0, 1, W); }
        }
        t = (MPI_Wtime() - t0) / k / 2 * 1e6;
        if (t < bestpp) bestpp = t;
    }
    if (r == 0) printf("Comm_rank %.1f ns/call, ping-pong 8 B %.3f us (best of 5)\n", best, bestpp);
    if (s != MPI_SESSION_NULL) { MPI_Comm_free(&W); MPI_Session_finalize(&s); } else MPI_Finalize();
    return 0;
}
