"""pycrs split-process shim standing in for mpi4py: ``from mpi4py import MPI`` in the application
gets shim/mpi4py/MPI.py, which forwards every call to this rank's helper (the process holding the
real MPI library). Put on the application's PYTHONPATH by helper.py only."""
__version__ = "4.1.2+pycrs-split"
