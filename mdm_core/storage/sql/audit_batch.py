"""Audit by group commit: concurrent audit records of a process share one transaction.

A decision is not made unless its audit record is durable ("no audit, no access"). Writing
each record in its own transaction costs one commit (a WAL flush) per request; here a
background thread per process takes every record queued while the previous batch was
committing and writes them in ONE transaction. Each caller still waits for its own record's
commit: :meth:`GroupCommitAuditWriter.record` returns only once the batch holding the record
has committed, and raises :class:`AuditUnavailable` when it failed or did not commit within
``timeout_s`` (the caller then blocks). A record whose caller gave up before the writer took
it is not written (its caller answered ``block``, so it is no decision).

The thread starts on first use and again after a fork (gunicorn workers), and stops with
:meth:`close`, which commits what is queued.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mdm_core.storage.sql.uow import SqlStorage

__all__ = ["AuditUnavailable", "GroupCommitAuditWriter"]

log = logging.getLogger(__name__)


class AuditUnavailable(RuntimeError):
    """The audit record was not made durable (write failed or timed out): block."""


@dataclass(frozen=True, slots=True)
class _Entry:
    actor: str
    action: str
    subject: str
    outcome: str
    detail: dict[str, Any]
    at: datetime
    done: Future[None]


_STOP = object()


class GroupCommitAuditWriter:
    def __init__(
        self, storage: SqlStorage, *, timeout_s: float = 5.0, max_batch: int = 512
    ) -> None:
        if storage is None:
            raise ValueError("GroupCommitAuditWriter needs the storage")
        if timeout_s <= 0 or max_batch < 1:
            raise ValueError("timeout_s must be positive and max_batch at least 1")
        self._storage = storage
        self._timeout = timeout_s
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False
        self.batches = 0  # committed batches (observability, tests)

    def record(
        self,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        detail: dict[str, Any],
        *,
        at: datetime | None = None,
    ) -> None:
        """Append one entry and wait until it is committed; raises :class:`AuditUnavailable`."""
        if self._closed:
            raise AuditUnavailable("the audit writer is closed")
        self._ensure_thread()
        done: Future[None] = Future()
        self._queue.put(
            _Entry(actor, action, subject, outcome, detail, at or datetime.now(UTC), done)
        )
        try:
            done.result(timeout=self._timeout)
        except FutureTimeout:
            done.cancel()  # not written if the writer has not taken it yet
            raise AuditUnavailable(f"audit record not durable within {self._timeout}s") from None
        except CancelledError:
            raise AuditUnavailable("audit record cancelled") from None
        except Exception as exc:
            raise AuditUnavailable(f"audit write failed: {type(exc).__name__}") from exc

    def close(self) -> None:
        """Commit what is queued and stop the thread (idempotent)."""
        with self._lock:
            self._closed = True
            thread = self._thread if self._pid == os.getpid() else None
            self._thread = None
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout=self._timeout)

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._thread is not None and self._pid == pid and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == pid and self._thread.is_alive():
                return
            if self._pid != pid:  # a forked child: the parent's queue and thread are not ours
                self._queue = queue.SimpleQueue()
            self._pid = pid
            self._thread = threading.Thread(
                target=self._run, name="audit-group-commit", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        q = self._queue
        while True:
            first = q.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._write([e for e in batch if isinstance(e, _Entry)])
            if stop:
                return

    def _write(self, batch: list[_Entry]) -> None:
        live = [e for e in batch if e.done.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            with self._storage.unit_of_work() as uow:
                for e in live:
                    uow.audit.record(e.actor, e.action, e.subject, e.outcome, e.detail, at=e.at)
        except Exception as exc:
            log.error("audit batch of %d failed: %s", len(live), type(exc).__name__)
            for e in live:
                e.done.set_exception(exc)
            return
        self.batches += 1
        for e in live:
            e.done.set_result(None)
