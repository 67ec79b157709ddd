"""The ``blcr`` CRS component: a native ptrace dumper and restorer (see component.py)."""
from crs import params as _params

_params.register("crs_blcr_truncate_files", "1", "On restore, cut the process's own output files "
                 "back to their size at the checkpoint (what it wrote later is undone); never "
                 "descriptors 0-2, append-mode files, or files other processes hold open too",
                 "bool")
_params.register("crs_blcr_omit_fds", "", "Descriptors (comma-separated numbers) left out of the "
                 "image: the process makes them again itself after a restore (an MPI rank's "
                 "launcher connection); they are closed in the restored process")
