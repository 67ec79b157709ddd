"""A checkpoint when the batch system warns: ``snapc_base_checkpoint_signal`` names a signal
that our mpirun takes as a request to checkpoint the job (then end it, or let it continue:
``snapc_base_signal_then``) instead of passing it on to the ranks. A job ended so exits with
``snapc_base_requeue_status``, which the batch system can be told means "requeue me"."""
from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass

from crs import endpoint
from crs.params import ParamError, Params

THEN = ("end", "continue")
#: signals mpirun cannot give this meaning: they stop or kill it, or already mean job control
RESERVED = {signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGCONT}


@dataclass(frozen=True)
class SignalCheckpoint:
    sig: signal.Signals
    end: bool
    requeue_status: int


def from_params(params: Params) -> SignalCheckpoint | None:
    """The configured signal checkpoint, None when off; ParamError (one line) when a value is
    wrong, so that mpirun refuses it at launch."""
    text = params.get("snapc_base_checkpoint_signal").strip().upper()
    then = params.get("snapc_base_signal_then").strip().lower()
    if then not in THEN:
        raise ParamError(f"parameter snapc_base_signal_then: {then!r} is not one of "
                         f"{', '.join(THEN)}")
    status = params.get_int("snapc_base_requeue_status")
    if not 0 <= status <= 255:
        raise ParamError(f"parameter snapc_base_requeue_status: {status} is not an exit status "
                         "(0-255)")
    if not text:
        return None
    try:
        sig = signal.Signals(int(text)) if text.isdigit() else signal.Signals[
            text if text.startswith("SIG") else f"SIG{text}"]
    except (KeyError, ValueError):
        raise ParamError(f"parameter snapc_base_checkpoint_signal: {text!r} is not a signal "
                         "(USR1, TERM, ...)") from None
    if sig in RESERVED:
        raise ParamError(f"parameter snapc_base_checkpoint_signal: {sig.name} cannot be used "
                         "(it stops, kills or continues mpirun)")
    return SignalCheckpoint(sig, then == "end", status)


def checkpoint_now(coordinator: object, wanted: SignalCheckpoint) -> threading.Thread:
    """Queue a checkpoint of the job (ending it if so configured) and report its outcome in one
    line on stderr, from a thread of its own (signals keep being served meanwhile)."""
    from .coordinator import Request

    def run() -> None:
        req = Request(term=wanted.end)
        coordinator.requests.put(req)  # type: ignore[attr-defined]
        while (event := req.events.get())["event"] not in endpoint.FINAL_EVENTS:
            pass
        name = wanted.sig.name
        if event["event"] == "done":
            if wanted.end:
                coordinator.requeue = True  # type: ignore[attr-defined]
            then = (f"ending the job (exit status {wanted.requeue_status}: requeue it)"
                    if wanted.end else "the job goes on")
            print(f"mpirun: {name}: checkpoint sequence {event['seq']} committed in "
                  f"{event['snapshot']}; {then}", file=sys.stderr, flush=True)
        else:
            print(f"mpirun: {name}: checkpoint failed: {event.get('message')}; the job goes on",
                  file=sys.stderr, flush=True)

    thread = threading.Thread(target=run, name="pycrs-signal-checkpoint", daemon=True)
    thread.start()
    return thread
