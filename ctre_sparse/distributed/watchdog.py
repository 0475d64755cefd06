"""Heartbeats between ranks, so that a lost rank stops the job instead of hanging it.

A blocking MPI collective waits forever for a peer that died without the
launcher noticing (a hung or stopped process, a machine cut off from the
network, a launcher started without automatic clean-up). Each rank runs a
:class:`Heartbeat` thread on a communicator of its own: every ``interval``
seconds it sends a small message to its successor in a ring (``rank + 1``)
and takes in those of its predecessor (``rank - 1``), with non-blocking
point-to-point calls only. When nothing has come from the predecessor for
``timeout`` seconds, it reports that rank lost (through ``on_lost``, which
the communicator makes a logged message and an ``MPI_Abort`` of the whole
job). Every rank is watched by its successor, so any single loss is seen,
whatever the other ranks are doing, blocking collectives included: the
thread needs ``MPI_THREAD_MULTIPLE``, the level mpi4py asks for by default.

Stopping is a handshake: a stopping rank sends a final "bye" and keeps
listening (still under the timeout) until its predecessor's "bye" arrives,
so every message sent is received and nothing is left pending when the
communicators are freed.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Heartbeat"]

_TAG = 7301
_BEAT, _BYE = 0, 1


class Heartbeat:
    """A ring of heartbeats over an MPI communicator, watched by a daemon thread.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        A communicator used by nothing else (the heartbeats take any message
        with their tag from the predecessor); at least 2 ranks.
    timeout : float
        Seconds of silence from the predecessor after which it is lost.
    on_lost : callable
        ``on_lost(rank, seconds)``, called once from the thread; it should
        not return (the communicator's aborts the job). If it does, the
        thread ends.
    interval : float, optional
        Seconds between heartbeats; default ``min(1, timeout / 8)``.
    """

    def __init__(self, comm, timeout, on_lost, interval=None):
        if comm.Get_size() < 2:
            raise ValueError("a heartbeat ring needs at least 2 ranks")
        if not float(timeout) > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.comm = comm
        self.timeout = float(timeout)
        self.interval = float(interval) if interval is not None else min(1.0, self.timeout / 8)
        self.on_lost = on_lost
        rank, size = comm.Get_rank(), comm.Get_size()
        self.successor, self.predecessor = (rank + 1) % size, (rank - 1) % size
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ctre-sparse-heartbeat",
                                        daemon=True)

    def start(self):
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def stop(self):
        """Say bye to the successor, wait for the predecessor's bye, end the thread.

        Every rank must call it (the predecessor's bye is awaited, under the
        timeout: a predecessor lost meanwhile is still reported).
        """
        self._stopping.set()
        self._thread.join()

    def _run(self):
        comm, pred, succ = self.comm, self.predecessor, self.successor
        inbox = np.zeros(1, dtype=np.int64)
        outbox = np.zeros(1, dtype=np.int64)
        recv = comm.Irecv(inbox, source=pred, tag=_TAG)
        send = None
        heard = time.monotonic()
        pred_done = said_bye = False
        while True:
            now = time.monotonic()
            while not pred_done and recv.Test():
                heard = now
                if int(inbox[0]) == _BYE:
                    pred_done = True
                else:
                    recv = comm.Irecv(inbox, source=pred, tag=_TAG)
            if send is None or send.Test():
                if said_bye:
                    if pred_done:
                        return
                else:
                    said_bye = self._stopping.is_set()
                    outbox[0] = _BYE if said_bye else _BEAT
                    send = comm.Isend(outbox, dest=succ, tag=_TAG)
            if not pred_done and now - heard > self.timeout:
                self.on_lost(pred, now - heard)
                return
            if self._stopping.is_set():    # the bye handshake: peers stop within moments
                time.sleep(min(0.005, self.interval))
            else:
                self._stopping.wait(self.interval)
