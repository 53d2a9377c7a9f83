"""The push delivery worker: one daemon thread per served process.

It wakes when kicked (a commit in this process queued a push SET: ``uow.call_after``) or on
its sweep (``signals.sweep_interval``, sooner when a retry falls due), then repeatedly:
claims a batch of due rows (:meth:`SignalStore.claim_push`: leased, so several processes
never send the same row at once), signs each SET (:func:`posture_gateway.signals.sets.sign_set`),
POSTs it (:func:`posture_gateway.signals.push.push_set`) and settles the outcome: delivered,
retry at ``now + retry_delay`` (until ``push.max_attempts``), or failed. Check-ins never wait
for it: the kick only sets an event.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import httpx

from mdm_core.storage.sql.database import Database
from posture_gateway.signals.metrics import DELIVERIES, LATENCY, QUEUE_DEPTH
from posture_gateway.signals.push import PushOutcome, push_set, retry_delay
from posture_gateway.signals.sets import sign_set
from posture_gateway.signals.settings import SignalsSettings
from posture_gateway.signals.store import DeliveryRow, open_store
from posture_gateway.signing.key_ring import KeyRing

__all__ = ["DeliveryWorker", "make_http"]

log = logging.getLogger(__name__)

_MIN_WAIT = 0.02


def make_http(settings: SignalsSettings) -> httpx.Client:
    push = settings.push
    timeout = httpx.Timeout(
        push.timeout.total_seconds(), connect=push.connect_timeout.total_seconds()
    )
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)


class DeliveryWorker:
    def __init__(
        self,
        settings: SignalsSettings,
        *,
        database: Database,
        keys: KeyRing,
        http: httpx.Client,
    ) -> None:
        self.settings = settings
        self.database = database
        self.keys = keys
        self.http = http
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="ssf-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def kick(self) -> None:
        """Deliver soon (called after a commit that queued push SETs)."""
        self._wake.set()

    # ---- work ---------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> int:
        """Claim one batch of due push rows and settle each; returns how many were tried."""
        now = now or datetime.now(UTC)
        push = self.settings.push
        with open_store(self.database) as store:
            rows = store.claim_push(now, now + push.lease, push.batch)
        if not rows:
            return 0
        outcomes = [(row, self._send(row)) for row in rows]
        settled = datetime.now(UTC)
        with open_store(self.database) as store:
            delivered = [row.id for row, out in outcomes if out.result == "delivered"]
            store.mark_delivered(delivered, settled)
            for row, out in outcomes:
                if out.result == "retry" and row.attempts < push.max_attempts:
                    delay = retry_delay(row.attempts, push.backoff_base, push.backoff_max)
                    store.mark_retry(row.id, settled + delay, out.detail)
                elif out.result != "delivered":
                    store.mark_failed(row.id, settled, out.detail)
        for row, out in outcomes:
            self._record(row, out, settled)
        return len(rows)

    def _send(self, row: DeliveryRow) -> PushOutcome:
        if not row.endpoint_url:
            return PushOutcome("failed", "stream has no push endpoint_url")
        try:
            token = sign_set(self.keys, row.claims)
        except Exception as exc:  # key ring unreadable: keep the row, try again later
            log.exception("could not sign SET %s", row.jti)
            return PushOutcome("retry", f"signing failed: {type(exc).__name__}")
        return push_set(self.http, row.endpoint_url, token, row.authorization_header)

    def _record(self, row: DeliveryRow, out: PushOutcome, at: datetime) -> None:
        max_attempts = self.settings.push.max_attempts
        if out.result == "delivered":
            DELIVERIES.labels("push", "delivered").inc()
            LATENCY.labels("push").observe(max(0.0, (at - row.created_at).total_seconds()))
            log.info("SET %s delivered to stream %s", row.jti, row.stream_id)
        elif out.result == "retry" and row.attempts < max_attempts:
            DELIVERIES.labels("push", "retry").inc()
            log.warning(
                "SET %s to stream %s: attempt %d failed (%s), will retry",
                row.jti,
                row.stream_id,
                row.attempts,
                out.detail,
            )
        else:
            DELIVERIES.labels("push", "failed").inc()
            log.error(
                "SET %s to stream %s failed permanently after %d attempt(s): %s",
                row.jti,
                row.stream_id,
                row.attempts,
                out.detail,
            )

    def sweep(self) -> float:
        """Housekeeping (queue depth, purge); returns seconds until the next due retry."""
        now = datetime.now(UTC)
        interval = self.settings.sweep_interval.total_seconds()
        with open_store(self.database) as store:
            QUEUE_DEPTH.set(store.depth())
            if now.timestamp() - self._last_purge > 3600:
                self._last_purge = now.timestamp()
                store.purge(now - self.settings.retention)
            due = store.next_due()
        if due is None:
            return interval
        return max(_MIN_WAIT, min(interval, (due - now).total_seconds()))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            wait = self.settings.sweep_interval.total_seconds()
            try:
                while self.run_once() >= self.settings.push.batch and not self._stop.is_set():
                    pass  # a full batch: more may be due
                wait = self.sweep()
            except Exception:  # database down: log, wait a sweep, try again
                log.exception("SET delivery sweep failed")
            self._wake.wait(wait)


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()
