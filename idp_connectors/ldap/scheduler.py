"""The scheduled LDAP sync: incremental every few minutes, full daily, in one process of many.

Every server worker may start a :class:`LdapScheduler`; they coordinate through a *lease
row* in the database (:class:`mdm_core.storage.sync_state.LeaseStore`, table ``leases``,
name ``ldap-sync:<source>``). On each tick a scheduler tries to take or renew the lease
(``UPDATE ... WHERE expired OR holder = me``, or the first ``INSERT``); only the holder syncs.
The lease lasts :attr:`LdapScheduler.lease_ttl` (longer than a tick, so the holder keeps it
while it lives); a holder that dies stops renewing and another worker takes over once the
lease has expired. The lease is released on :meth:`stop`. This works on SQLite and
PostgreSQL alike and needs no Redis.

Which sync: a full one when the stored ``last_full_at`` is older than ``full_every`` (or
there is none), else an incremental one. A failed sync is logged with its reason (never the
bind password) and retried on the next tick; the cursor only moves after a successful sync.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from idp_connectors.errors import ConnectorError
from idp_connectors.ldap.config import LdapSettings
from idp_connectors.ldap.sync import LdapSync, LdapSyncResult
from mdm_core.directory.precedence import SourceOfTruth
from mdm_core.storage.uow import Storage

__all__ = ["LdapScheduler", "lease_name"]

log = logging.getLogger(__name__)


def lease_name(source: str) -> str:
    return f"ldap-sync:{source}"


class LdapScheduler:
    """Runs :class:`LdapSync` on the configured schedule while it holds the lease."""

    def __init__(
        self,
        settings: LdapSettings,
        storage: Storage,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        holder: str | None = None,
        sync_factory: Callable[[LdapSettings, Storage], LdapSync] | None = None,
        source_of_truth: SourceOfTruth | None = None,
    ) -> None:
        if storage is None:
            raise ValueError("LdapScheduler needs a storage")
        self.settings = settings
        self.storage = storage
        self.clock = clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.sync_factory = sync_factory or (
            lambda s, st: LdapSync(
                s, st, clock=clock, actor="system:ldap-schedule", source_of_truth=source_of_truth
            )
        )
        every = settings.schedule.incremental_every
        self.tick = every
        # Long enough to cover a slow sync and a missed tick; renewed at each tick.
        self.lease_ttl = max(every * 3, timedelta(minutes=10))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_result: LdapSyncResult | None = None
        self.last_error: str | None = None

    def holds_lease(self) -> bool:
        with self.storage.unit_of_work() as uow:
            return uow.leases.acquire(
                lease_name(self.settings.source), self.holder, now=self.clock(), ttl=self.lease_ttl
            )

    def due_full(self) -> bool:
        with self.storage.unit_of_work() as uow:
            stored = uow.sync_cursors.get(self.settings.source)
        if stored is None or stored.last_full_at is None or stored.cursor is None:
            return True
        return self.clock() - stored.last_full_at >= self.settings.schedule.full_every

    def run_once(self) -> LdapSyncResult | None:
        """One tick: ``None`` when another process holds the lease, else the sync's result
        (or ``None`` after a logged failure)."""
        if not self.holds_lease():
            return None
        full = self.due_full()
        try:
            result = self.sync_factory(self.settings, self.storage).run(full=full)
        except ConnectorError as exc:
            self.last_error = f"{exc.reason}: {exc}"
            log.warning("scheduled LDAP sync failed: %s", self.last_error)
            return None
        self.last_result, self.last_error = result, None
        log.info(
            "scheduled LDAP %s sync: %s in %.1fs", result.mode, result.counts(), result.seconds
        )
        return result

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="ldap-schedule", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the schedule must survive a bad tick (database down, ...)
                log.exception("scheduled LDAP sync tick failed")
            self._stop.wait(self.tick.total_seconds())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        try:
            with self.storage.unit_of_work() as uow:
                uow.leases.release(lease_name(self.settings.source), self.holder)
        except Exception:  # shutting down: the lease expires by itself
            log.exception("could not release the LDAP schedule lease")
