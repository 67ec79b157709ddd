"""The MPI layer (snapc/crcp) seen from inside the ranks: every rank runs every test, with the
layer preloaded (tests/test_crcp_layer.py starts the job). A cut is asked for by the rank
itself, as the rank's app coordinator does before an image is taken."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from mpi4py import MPI

from snapc import crcp

pytestmark = pytest.mark.mpi(min_size=3)


def test_the_layer_is_loaded_and_serves_this_rank() -> None:
    assert crcp.loaded()
    assert crcp.active()


def test_a_message_in_flight_at_the_cut_is_drained_and_delivered_after_it() -> None:
    """Each rank sends to the next and asks for a cut before anyone receives: the messages are
    received into the layer, MPI is torn down and rebuilt, and each arrives intact after it,
    on a communicator made before the cut."""
    w = MPI.COMM_WORLD
    r, n = w.Get_rank(), w.Get_size()
    dup = w.Dup()
    sent = np.arange(1000, dtype="f8") + 1000 * r
    req = dup.Isend(sent, dest=(r + 1) % n, tag=7)
    crcp.quiesce()
    drained = crcp.stats()["drained_messages"]
    crcp.resume(False)
    got = np.empty(1000, dtype="f8")
    dup.Recv(got, source=(r - 1) % n, tag=7)
    req.Wait()
    assert np.array_equal(got, np.arange(1000, dtype="f8") + 1000 * ((r - 1) % n))
    assert w.allreduce(drained) >= 1  # the case really happened somewhere
    assert dup.allreduce(r) == n * (n - 1) // 2
    dup.Free()


def test_a_cancelled_send_is_not_waited_for_at_the_cut() -> None:
    """A send cancelled before anyone matched it (mpi4py's own testProbeCancel does this on
    COMM_SELF) never arrives: the drain must not wait for it, whether the application freed the
    request or still holds it."""
    w = MPI.COMM_WORLD
    me = MPI.COMM_SELF.Dup()
    freed = me.Issend([None, 0, MPI.BYTE], 0, 123)
    freed.Cancel()
    freed.Free()
    held = me.Issend([None, 0, MPI.BYTE], 0, 124)
    held.Cancel()
    crcp.quiesce(30)  # before the fix: a drain spinning for ever on the missing message
    crcp.resume(False)
    status = MPI.Status()
    held.Wait(status)
    assert status.Is_cancelled()
    assert not me.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG)
    assert me.allreduce(1) == 1 and w.allreduce(1) == w.Get_size()
    me.Free()


def test_a_live_shared_memory_window_is_refused_by_every_rank() -> None:
    """A shared-memory window cannot be brought back (its memory belongs to the node's MPI, not
    to the image): every rank refuses the cut, saying why, and MPI goes on; once it is freed,
    the cut is reached."""
    w = MPI.COMM_WORLD
    held = MPI.Win.Allocate_shared(8, comm=w)
    with pytest.raises(crcp.LayerError,
                       match=r"a shared-memory window \(MPI_Win_allocate_shared\) is live"):
        crcp.quiesce()
    assert w.allreduce(1) == w.Get_size()  # MPI still works
    held.Free()
    crcp.quiesce()
    crcp.resume(False)
    assert w.allreduce(1) == w.Get_size()


def allreduce(w: MPI.Comm, value: float) -> float:
    out = np.zeros(1)
    w.Allreduce(np.array([float(value)]), out)
    return float(out[0])


def cut_outcome(timeout: float) -> str:
    """A cut asked for with ``timeout`` (then MPI made again at once): what became of it."""
    try:
        crcp.quiesce(timeout)
    except crcp.LayerError as exc:
        return f"gave up: {exc}"
    crcp.resume(False)
    return "cut reached"


def test_a_cut_not_reached_in_time_is_given_up_by_every_rank_and_the_job_goes_on() -> None:
    """Rank 0 computes for 6 s while the others wait in an MPI_Allreduce (a collective: a cut
    cannot take a rank blocked in it): a cut asked for with a 0.5 s timeout is given up by all
    the ranks, in the same round, and one asked for without a timeout is reached once rank 0 is
    back; the answer is the plain one."""
    w = MPI.COMM_WORLD
    r, n = w.Get_rank(), w.Get_size()
    outcomes: list[str] = []

    def control() -> None:
        # the other ranks enter the Allreduce that rank 0 keeps them waiting in first (a cut
        # asked for before they do is reached at once, with rank 0 short of it)
        time.sleep(1.0)
        outcomes.append(cut_outcome(0.5))
        crcp.quiesce(0)
        outcomes.append("cut reached")
        crcp.resume(False)

    total = allreduce(w, r)
    thread = threading.Thread(target=control)
    thread.start()
    if r == 0:
        time.sleep(6)
    total += allreduce(w, r + 1)
    thread.join()
    assert total == n * (n - 1) // 2 + n * (n + 1) // 2
    assert outcomes == ["gave up: the ranks did not reach a consistent cut within 0.5 s "
                        "(snapc_crcp_quiesce_timeout): a rank is computing or waiting outside "
                        "MPI; the job goes on", "cut reached"]


def test_a_long_job_survives_as_many_cuts_as_it_likes() -> None:
    """Every cut finalizes MPICH's session and makes a new one. MPICH (5.0.2, and its main
    branch) never empties the stack of callbacks its finalize runs, and each new session adds to
    it a callback for every kind of object it then uses: plain MPICH aborts ("overflow in
    finalize stack!") after some 25-55 session cycles, and so did a job at about its 30th
    checkpoint. 80 cycles, three times what MPICH survives with these objects in use
    (communicators, windows, datatypes, ops, requests)."""
    w = MPI.COMM_WORLD
    r, n = w.Get_rank(), w.Get_size()
    dup = w.Dup()
    total = 0
    for cycle in range(80):
        crcp.quiesce(60)
        crcp.resume(False)
        win = MPI.Win.Allocate(8, comm=dup)
        win.Fence()
        win.Fence()
        win.Free()
        triple = MPI.DOUBLE.Create_contiguous(3).Commit()
        triple.Free()
        op = MPI.Op.Create(lambda a, b, t: None)
        op.Free()
        req = dup.Isend(np.array([float(cycle)]), (r + 1) % n, tag=cycle)
        got = np.empty(1)
        dup.Recv(got, (r - 1) % n, tag=cycle)
        req.Wait()
        total += int(got[0])
    assert total == sum(range(80))
    assert dup.allreduce(r) == n * (n - 1) // 2
    dup.Free()


def test_collectives_of_one_rank_alone_are_not_held_by_the_cut() -> None:
    """Rank 0 fences a window of its own (on a duplicate of MPI_COMM_SELF) for a second and
    5000 times more, while the others wait for it in a Barrier. The cut asked for meanwhile must
    not count those fences (they wait on no one) and so hold rank 0 to one more per round of the
    agreement (mpi4py's test_rma made such checkpoints time out); it is reached once rank 0
    comes to the Barrier."""
    w = MPI.COMM_WORLD
    outcomes: list[str] = []

    def control() -> None:
        time.sleep(0.5)
        outcomes.append(cut_outcome(20))

    thread = threading.Thread(target=control)
    thread.start()
    fences = 0
    if w.Get_rank() == 0:
        alone = MPI.COMM_SELF.Dup()
        mine = MPI.Win.Allocate(8, comm=alone)
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # until the cut is being agreed
            mine.Fence()
            fences += 1
        for _ in range(5000):  # held, one per round of 10 ms or more: 50 s
            mine.Fence()
            fences += 1
        mine.Free()
        alone.Free()
    w.Barrier()
    thread.join()
    assert outcomes == ["cut reached"]
    assert w.allreduce(fences) >= 5000
