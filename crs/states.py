"""The fault-tolerance event states shared by every layer (Open MPI's ft_event vocabulary)."""
from __future__ import annotations

import enum


class State(enum.Enum):
    """Where a process is in a checkpoint/restart cycle."""

    NONE = "NONE"
    CHECKPOINT = "CHECKPOINT"  # about to be saved
    RESTART_PRE = "RESTART_PRE"  # restored, before anything else runs
    RESTART = "RESTART"  # restored and resuming
    CONTINUE = "CONTINUE"  # saved, the original process goes on
    TERM = "TERM"  # saved, the process ends
    RUNNING = "RUNNING"
    ERROR = "ERROR"
