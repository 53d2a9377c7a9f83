"""The outbox relay: moves committed domain events from the outbox table to the event bus.

:meth:`OutboxRelay.run_once` takes a batch of unpublished rows in id order, publishes each to
the bus and marks the published ones, in one unit of work. Guarantees:

- in order within a process: rows are published in id order, and a failing publish stops the
  batch there (later rows wait for the next run, so nothing overtakes);
- at least once across crashes: a row is marked published only in the transaction that
  follows its publication, so a crash in between re-sends it (consumers dedupe by event id);
- several processes share the work: on PostgreSQL the batch is taken with
  ``FOR UPDATE SKIP LOCKED``, so two relays never publish the same row concurrently.

:meth:`start` runs a background thread that drains the outbox whenever :meth:`kick` is called
(services kick after each unit of work that wrote events) and at least every
``poll_interval``; :meth:`stop` ends it. Published rows older than ``retention`` are purged.
Kicks are coalesced: a kick starts a pass after ``coalesce`` seconds, and every kick in that
window joins it, so a busy server runs one relay transaction per window, not one per check-in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from mdm_core.bus.events import EventBus
from mdm_core.storage.uow import Storage

__all__ = ["OutboxRelay"]

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxRelay:
    def __init__(
        self,
        storage: Storage,
        bus: EventBus,
        *,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        retention: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] = _utcnow,
        coalesce: float = 0.02,
    ) -> None:
        if storage is None or bus is None:
            raise ValueError("OutboxRelay needs a storage and a bus")
        if coalesce < 0:
            raise ValueError("coalesce must not be negative")
        self.storage = storage
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention = retention
        self.coalesce = coalesce
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()  # one batch at a time per process keeps id order
        self._next_purge: datetime | None = None  # first purge on the first loop run

    def run_once(self) -> int:
        """Publish one batch; returns how many events were published."""
        with self._run_lock, self.storage.unit_of_work() as uow:
            entries = uow.outbox.fetch_unpublished(self.batch_size)
            published: list[int] = []
            try:
                for entry in entries:
                    self.bus.publish(entry.event)
                    published.append(entry.id)
            except Exception:  # the bus is down: keep what went out, retry the rest later
                log.exception("publishing outbox event failed; will retry")
            uow.outbox.mark_published(published, self._clock())
        return len(published)

    def drain(self, max_batches: int = 1000) -> int:
        """Publish until the outbox is empty (or a batch comes back short); returns the count."""
        total = 0
        for _ in range(max_batches):
            count = self.run_once()
            total += count
            if count < self.batch_size:
                break
        return total

    def purge(self) -> int:
        """Delete rows published more than ``retention`` ago."""
        with self.storage.unit_of_work() as uow:
            return uow.outbox.purge_published(self._clock() - self.retention)

    # --- background thread ------------------------------------------------------------------

    def kick(self) -> None:
        """Ask the background thread to publish now (cheap; safe from any thread)."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after its current batch (unpublished rows stay for the next run)."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            if self._wake.wait(backoff) and self.coalesce > 0:
                self._stop.wait(self.coalesce)  # kicks meanwhile join this pass
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                while not self._stop.is_set() and self.run_once() >= self.batch_size:
                    pass
                if self._next_purge is None or self._clock() >= self._next_purge:
                    self._next_purge = self._clock() + timedelta(minutes=10)
                    self.purge()
                backoff = self.poll_interval
            except Exception:  # the store is down: keep the thread, back off
                log.exception("outbox relay run failed")
                backoff = min(backoff * 2, 30.0)
