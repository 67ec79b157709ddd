"""SnapC: coordinated checkpoint and restart of whole MPI jobs (global coordinator in our
``mpirun``, an application coordinator in every rank, global snapshots on disk)."""
from crs import params as _params

_params.register("snapc_base_global_snapshot_dir", _params.SNAPSHOT_DIR_DEFAULT, "Directory "
                 "where global snapshots (ompi_global_snapshot_<JOBID>.ckpt) are written; "
                 "$SCRATCH if set, else the job's working directory", "path")
_params.register("snapc_base_coordinator_address", "127.0.0.1", "Address the global coordinator "
                 "listens on for its ranks; set it to an address all nodes reach for multi-node "
                 "jobs")
_params.register("snapc_base_registration_timeout", "60", "Seconds a checkpoint request waits for "
                 "every rank to register with the coordinator", "int")
_params.register("snapc_base_detach_timeout", "600", "Seconds a transparent checkpoint waits "
                 "for a rank to come back after it detached for its image (0: no limit)", "int")
_params.register("snapc_crcp_quiesce_timeout", "600", "Seconds the ranks of a transparent "
                 "checkpoint wait for their consistent cut before all give up and the job goes "
                 "on (0: no limit)", "int")
_params.register("snapc_base_period", "0", "Seconds between a job's own checkpoints (counted "
                 "from the end of one to the start of the next), 'auto' for Young's optimal "
                 "interval sqrt(2 * cost * snapc_base_mtbf) from the job's measured checkpoint "
                 "cost, or 0: only on request")
_params.register("snapc_base_mtbf", "86400", "Mean time between failures in seconds, for "
                 "snapc_base_period auto (the whole job's: a node's MTBF divided by the number of "
                 "nodes)", "int")
_params.register("snapc_base_verbose", "0", "1: mpirun says on stderr, after each of the job's "
                 "own checkpoints (snapc_base_period), what it cost and when the next one comes "
                 "(with auto: the cost the interval was computed from)", "int")
_params.register("snapc_base_keep", "0", "Keep only the newest N finished sequences of a job's "
                 "global snapshot (older ones are removed after each commit; never the one the "
                 "job restarted from); 0 keeps all", "int")
_params.register("snapc_base_checkpoint_signal", "", "A signal (USR1, TERM, ...) that makes "
                 "mpirun checkpoint the job instead of passing the signal on, as a batch system "
                 "sends before preemption or the time limit (sbatch --signal=B:USR1@120); empty: "
                 "off")
_params.register("snapc_base_signal_then", "end", "After a checkpoint on "
                 "snapc_base_checkpoint_signal: 'end' the job (mpirun then exits with "
                 "snapc_base_requeue_status) or 'continue' it")
_params.register("snapc_base_requeue_status", "99", "mpirun's exit status when a checkpoint on "
                 "snapc_base_checkpoint_signal ended the job: the job is to be requeued (SLURM: "
                 "RequeueExit=99)", "int")
_params.register("snapc_base_restarts", "0", "How many times mpirun restarts a job that failed "
                 "(a rank died, a node was lost) from the newest sequence of its global snapshot "
                 "that verifies; 0: never", "int")
_params.register("snapc_base_resume", "", "The job's global snapshot directory: when it holds a "
                 "finished sequence, mpirun resumes the job from the newest that verifies instead "
                 "of starting the program, else starts it with its checkpoints going there (the "
                 "same command line for the first run and every requeue); empty: off", "path")
_params.register("mpirun_launcher", "", "The real MPI launcher behind our mpirun: a path, or "
                 "'mpich' / 'openmpi'; empty finds the installed one")
