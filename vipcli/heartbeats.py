"""Under torchrun: telling a rank that stopped running (SIGSTOP, a suspended job, a frozen node) from one that is
only slow, so that the others need not wait for it up to VIP_BARRIER_HOURS.

Every rank, once it joined the process group, counts up its own key in torchrun's store (the small key-value
server the ranks met at, MASTER_ADDR:MASTER_PORT) every BEAT_S seconds, from a thread of its own: it beats while
its main thread reads a slow disk, hashes a large archive or encodes its share, however long those take, and stops
only when the whole process stops. A rank that waits for the others (`watched`: a barrier, rank 0's view of the
job) runs the wait in a thread and watches the others' counts meanwhile: one that has not moved for STUCK_S is
named in one error line, where before the wait lasted VIP_BARRIER_HOURS (24 hours by default). A rank whose
process is alive but whose main thread hangs (a stalled network filesystem) keeps beating: the barrier timeout
still bounds that wait, as before. Where the store cannot be reached, nothing is watched (the waits are as before).

The main thread never calls the store itself while it waits (a look runs in a thread of its own, `look`): Ctrl-C
stops a rank at once even where the store's node froze (torch's store client then never returns, whatever its
timeout).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

BEAT_S = 2.0  # how often each rank counts up its key
STUCK_S = 300.0  # how long a rank's count may stand still before the waiting ranks call it stopped
POLL_S = 10.0  # how often a waiting rank looks at the others' counts: each look reads every rank's key from the store
# torchrun's rendezvous shares (64 ranks looking each second would be 4,000 calls a second); a finished wait is seen at
# once all the same (the wait's thread is joined), only a stopped rank is named up to POLL_S later
STORE_TIMEOUT_S = 60.0  # how long one call to the store may take before it is given up
GAP_S = 30.0  # a waiting rank that did not look for this long did not run itself: it looks afresh


class Heartbeats:
    """This rank's beat (a thread counting up its key) and its view of the other ranks' beats."""

    def __init__(self, rank: int, size: int, connect):
        """`connect()` returns a new client of the store (one for the beating thread, one for the watching one)."""
        self.rank, self.size, self.connect = rank, size, connect
        self.prefix = f"vip/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/beat"
        self.stopped = threading.Event()
        self.writer = self.reader = None  # the store clients of the beating thread and of the watching one
        self.counts: dict[int, tuple[int, float]] = {}  # rank -> (count, when it was first seen at that count)
        self.last_look: float | None = None
        self.looking: threading.Thread | None = None  # the thread of the last look, while it still waits on the store
        self.thread = threading.Thread(target=self._beat, name="vip-heartbeat", daemon=True)

    def start(self) -> Heartbeats:
        """Begin beating (the first count is made before this returns, so a rank is never seen at none)."""
        writer = self.connect()
        writer.add(f"{self.prefix}{self.rank}", 1)
        self.writer = writer
        self.thread.start()
        return self

    def _beat(self) -> None:
        while not self.stopped.wait(BEAT_S):
            self._count_up()

    def _count_up(self) -> None:
        """One beat. A store call that fails (a moment's overload, a dropped connection) is tried again at the next
        beat on a new connection: a rank that runs keeps beating, and is never taken for one that stopped; where the
        store is gone for good (the job is ending), the others see no more beats, as they wait no more."""
        try:
            if self.writer is None:
                self.writer = self.connect()
            self.writer.add(f"{self.prefix}{self.rank}", 1)
        except Exception:  # noqa: BLE001 - tried again at the next beat
            self.writer = None

    def stop(self) -> None:
        """Stop beating (as the rank leaves the process group)."""
        self.stopped.set()

    def stuck(self) -> list[tuple[int, float]]:
        """The other ranks whose count has not moved for STUCK_S of this rank's own watching, with how long it stood
        still; [] where the store cannot be read (nothing is claimed then). A rank whose count is still 0 never
        beat (the store was out of its reach when it joined) and is never called stopped. A gap of GAP_S between two
        looks means this rank did not run either (the whole job suspended, then resumed): the watch begins afresh,
        so the others, resumed too, have time to beat again."""
        now = time.monotonic()
        if self.last_look is not None and now - self.last_look > GAP_S:
            self.counts.clear()
        self.last_look = now
        try:
            if self.reader is None:
                self.reader = self.connect()
            counts = {rank: self.reader.add(f"{self.prefix}{rank}", 0) for rank in range(self.size) if rank != self.rank}
        except Exception:  # noqa: BLE001 - the store is gone: the wait itself says what became of the others
            self.reader = None  # a dropped connection: the next look makes a new one
            return []
        stuck = []
        for rank, count in counts.items():
            if count == 0:  # never beat: its store could not be reached (nothing is known of it), not a stopped rank
                continue
            seen, since = self.counts.get(rank, (None, now))
            if count != seen:
                self.counts[rank] = (count, now)
            elif now - since >= STUCK_S:
                stuck.append((rank, now - since))
        return stuck

    def look(self) -> list[tuple[int, float]]:
        """`stuck()`, run in a thread of its own so that the main thread never waits on the store (where its node
        froze, Ctrl-C would never be seen); [] while an earlier look still waits on it."""
        if self.looking is not None and self.looking.is_alive():
            return []
        found: list = []
        self.looking = threading.Thread(target=lambda: found.extend(self.stuck()), name="vip-look", daemon=True)
        self.looking.start()
        self.looking.join(STORE_TIMEOUT_S)  # a signal interrupts this wait, unlike one inside the store's call
        return found if not self.looking.is_alive() else []


_beats: Heartbeats | None = None


def start(rank: int, size: int, environ) -> None:
    """Begin this rank's beat in torchrun's store at MASTER_ADDR:MASTER_PORT; where it cannot be reached, nothing
    is watched."""
    global _beats
    import torch.distributed as dist

    host, port = environ.get("MASTER_ADDR", "").strip(), int(environ.get("MASTER_PORT", "0").strip() or 0)

    def connect():
        return dist.TCPStore(host, port, is_master=False, timeout=timedelta(seconds=STORE_TIMEOUT_S),
                             wait_for_workers=False)

    try:
        _beats = Heartbeats(rank, size, connect).start()
    except Exception:  # noqa: BLE001 - no store to beat in: the waits are as before
        _beats = None


def stop() -> None:
    """Stop this rank's beat (it leaves the process group)."""
    global _beats
    if _beats is not None:
        _beats.stop()
        _beats = None


def watched(collective, stuck_error):
    """`collective()` (a barrier, a broadcast: a wait for every rank), run in a thread while the other ranks' beats
    are watched; its result, or what it raised. `stuck_error(stuck)` is raised instead, the thread left waiting,
    when some ranks have not beaten for STUCK_S: (rank, seconds) pairs. Without beats, `collective()` as it is."""
    if _beats is None:
        return collective()
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, collective()))
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
            outcome.append((False, error))

    thread = threading.Thread(target=run, name="vip-wait", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(POLL_S)
        if thread.is_alive():
            stuck = _beats.look()
            if stuck:
                raise stuck_error(stuck)
    done, value = outcome[0]
    if not done:
        raise value
    return value
