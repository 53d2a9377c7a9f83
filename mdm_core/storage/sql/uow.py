"""SQL unit of work: the per-concern SQL stores bound to one connection in a transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.read_ahead import ReadAhead

if TYPE_CHECKING:
    from mdm_core.storage.credentials import AllCredentials, CredentialRevoker
    from mdm_core.storage.outbox import OutboxListener
    from mdm_core.storage.sql.audit import SqlAuditStore
    from mdm_core.storage.sql.certauth import SqlCaKeyStore, SqlCertificateStore
    from mdm_core.storage.sql.compliance import SqlComplianceStore
    from mdm_core.storage.sql.devices import SqlDeviceStore
    from mdm_core.storage.sql.directory import (
        SqlDirectoryGroupStore,
        SqlDirectoryUserStore,
        SqlMembershipStore,
    )
    from mdm_core.storage.sql.directory_claims import SqlSourceClaimStore
    from mdm_core.storage.sql.enrollment import SqlEnrollmentTokenStore, SqlRegisteredSerialStore
    from mdm_core.storage.sql.identity import SqlDeviceIdentityStore
    from mdm_core.storage.sql.identity_links import SqlIdentityLinkStore
    from mdm_core.storage.sql.outbox import SqlOutboxStore
    from mdm_core.storage.sql.posture import SqlPostureStore
    from mdm_core.storage.sql.queue import SqlCommandStore
    from mdm_core.storage.sql.replay import SqlReplayStore
    from mdm_core.storage.sql.scim import SqlScimResourceStore
    from mdm_core.storage.sql.staleness import SqlStalePostureStore
    from mdm_core.storage.sql.sync_state import (
        SqlLeaseStore,
        SqlSourceEntryStore,
        SqlSyncCursorStore,
    )
    from mdm_core.storage.sql.wipe_requests import SqlWipeRequestStore

__all__ = ["SqlUnitOfWork", "SqlStorage", "CredentialRevokerFactory", "OutboxListenerFactory"]

log = logging.getLogger(__name__)

#: Builds a :class:`~mdm_core.storage.credentials.CredentialRevoker` on a unit of work's
#: connection (the access plane registers one with :meth:`SqlStorage.add_credential_revoker`).
CredentialRevokerFactory = Callable[[Connection], "CredentialRevoker"]

#: Builds an :class:`~mdm_core.storage.outbox.OutboxListener` for one unit of work (its
#: ``conn``, ``dialect`` and ``call_after``); registered with
#: :meth:`SqlStorage.add_outbox_listener`.
OutboxListenerFactory = Callable[["SqlUnitOfWork"], "OutboxListener"]


class SqlUnitOfWork:
    """Stores are created on first use and share ``conn`` (one transaction).

    Add one ``functools.cached_property`` per concern, importing its module lazily.
    """

    def __init__(
        self,
        conn: Connection,
        dialect: str,
        revokers: Sequence[tuple[str, CredentialRevokerFactory]] = (),
        outbox_listeners: Sequence[OutboxListenerFactory] = (),
    ) -> None:
        self.conn = conn
        self.dialect = dialect
        self._after: list[Callable[[], object]] = []
        self._revokers = tuple(revokers)
        self._outbox_listeners = tuple(outbox_listeners)
        # Rows one statement read for a later store call of this unit of work (check-ins).
        self.read_ahead = ReadAhead()

    def call_after(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once this unit of work has ended (committed or rolled back)."""
        self._after.append(callback)

    def _run_after(self) -> None:
        for callback in self._after:
            try:
                callback()
            except Exception:  # an after-hook must not mask the unit of work's own outcome
                log.exception("unit-of-work after-hook failed")
        self._after.clear()

    @cached_property
    def devices(self) -> SqlDeviceStore:
        from mdm_core.storage.sql.devices import SqlDeviceStore

        return SqlDeviceStore(self.conn, self.dialect)

    @cached_property
    def identities(self) -> SqlDeviceIdentityStore:
        from mdm_core.storage.sql.identity import SqlDeviceIdentityStore

        return SqlDeviceIdentityStore(self.conn, self.dialect)

    @cached_property
    def certificates(self) -> SqlCertificateStore:
        from mdm_core.storage.sql.certauth import SqlCertificateStore

        return SqlCertificateStore(self.conn, self.dialect)

    @cached_property
    def ca_keys(self) -> SqlCaKeyStore:
        from mdm_core.storage.sql.certauth import SqlCaKeyStore

        return SqlCaKeyStore(self.conn, self.dialect)

    @cached_property
    def enrollment_tokens(self) -> SqlEnrollmentTokenStore:
        from mdm_core.storage.sql.enrollment import SqlEnrollmentTokenStore

        return SqlEnrollmentTokenStore(self.conn, self.dialect)

    @cached_property
    def serials(self) -> SqlRegisteredSerialStore:
        from mdm_core.storage.sql.enrollment import SqlRegisteredSerialStore

        return SqlRegisteredSerialStore(self.conn, self.dialect)

    @cached_property
    def replay(self) -> SqlReplayStore:
        from mdm_core.storage.sql.replay import SqlReplayStore

        return SqlReplayStore(self.conn, self.dialect)

    @cached_property
    def audit(self) -> SqlAuditStore:
        from mdm_core.storage.sql.audit import SqlAuditStore

        return SqlAuditStore(self.conn, self.dialect)

    @cached_property
    def outbox(self) -> SqlOutboxStore:
        from mdm_core.storage.sql.outbox import SqlOutboxStore

        return SqlOutboxStore(
            self.conn, self.dialect, [factory(self) for factory in self._outbox_listeners]
        )

    @cached_property
    def posture(self) -> SqlPostureStore:
        from mdm_core.storage.sql.posture import SqlPostureStore

        return SqlPostureStore(self.conn, self.dialect, self.read_ahead)

    @cached_property
    def commands(self) -> SqlCommandStore:
        from mdm_core.storage.sql.queue import SqlCommandStore

        return SqlCommandStore(self.conn, self.dialect)

    @cached_property
    def directory_users(self) -> SqlDirectoryUserStore:
        from mdm_core.storage.sql.directory import SqlDirectoryUserStore

        return SqlDirectoryUserStore(self.conn, self.dialect)

    @cached_property
    def directory_groups(self) -> SqlDirectoryGroupStore:
        from mdm_core.storage.sql.directory import SqlDirectoryGroupStore

        return SqlDirectoryGroupStore(self.conn, self.dialect)

    @cached_property
    def memberships(self) -> SqlMembershipStore:
        from mdm_core.storage.sql.directory import SqlMembershipStore

        return SqlMembershipStore(self.conn, self.dialect, self.read_ahead)

    @cached_property
    def source_claims(self) -> SqlSourceClaimStore:
        from mdm_core.storage.sql.directory_claims import SqlSourceClaimStore

        return SqlSourceClaimStore(self.conn, self.dialect)

    @cached_property
    def compliance(self) -> SqlComplianceStore:
        from mdm_core.storage.sql.compliance import SqlComplianceStore

        return SqlComplianceStore(self.conn, self.dialect, self.read_ahead)

    @cached_property
    def credentials(self) -> AllCredentials:
        from mdm_core.storage.credentials import AllCredentials

        return AllCredentials([(kind, factory(self.conn)) for kind, factory in self._revokers])

    @cached_property
    def identity_links(self) -> SqlIdentityLinkStore:
        from mdm_core.storage.sql.identity_links import SqlIdentityLinkStore

        return SqlIdentityLinkStore(self.conn, self.dialect)

    @cached_property
    def source_entries(self) -> SqlSourceEntryStore:
        from mdm_core.storage.sql.sync_state import SqlSourceEntryStore

        return SqlSourceEntryStore(self.conn, self.dialect)

    @cached_property
    def sync_cursors(self) -> SqlSyncCursorStore:
        from mdm_core.storage.sql.sync_state import SqlSyncCursorStore

        return SqlSyncCursorStore(self.conn, self.dialect)

    @cached_property
    def leases(self) -> SqlLeaseStore:
        from mdm_core.storage.sql.sync_state import SqlLeaseStore

        return SqlLeaseStore(self.conn, self.dialect)

    @cached_property
    def scim_resources(self) -> SqlScimResourceStore:
        from mdm_core.storage.sql.scim import SqlScimResourceStore

        return SqlScimResourceStore(self.conn, self.dialect)

    @cached_property
    def stale_postures(self) -> SqlStalePostureStore:
        from mdm_core.storage.sql.staleness import SqlStalePostureStore

        return SqlStalePostureStore(self.conn, self.dialect)

    @cached_property
    def wipe_requests(self) -> SqlWipeRequestStore:
        from mdm_core.storage.sql.wipe_requests import SqlWipeRequestStore

        return SqlWipeRequestStore(self.conn, self.dialect)


class SqlStorage:
    """:class:`mdm_core.storage.uow.Storage` on a :class:`Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._revokers: list[tuple[str, CredentialRevokerFactory]] = []
        self._outbox_listeners: list[OutboxListenerFactory] = []

    def add_credential_revoker(
        self, factory: CredentialRevokerFactory, *, kind: str = "tokens"
    ) -> None:
        """Register the access plane's revoker: every unit of work from now on builds one on
        its own connection, so revocations commit with the change that caused them. ``kind``
        (``"tokens"``, ``"sessions"``) is what the ``access.revoked`` event counts it as."""
        if factory is None:
            raise ValueError("add_credential_revoker needs a factory")
        self._revokers.append((kind, factory))

    def add_outbox_listener(self, factory: OutboxListenerFactory) -> None:
        """Register a plane's outbox listener: every unit of work from now on builds one and
        its outbox store calls it with the events it adds, on the same connection, so what
        the listener writes commits with the change that caused the events."""
        if factory is None:
            raise ValueError("add_outbox_listener needs a factory")
        self._outbox_listeners.append(factory)

    @contextmanager
    def unit_of_work(self) -> Iterator[SqlUnitOfWork]:
        uow: SqlUnitOfWork | None = None
        try:
            with self.database.transaction() as conn:
                uow = SqlUnitOfWork(
                    conn, self.database.dialect, self._revokers, self._outbox_listeners
                )
                yield uow
        finally:
            if uow is not None:
                uow._run_after()
