"""SQL unit of work: the per-concern SQL stores bound to one connection in a transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from mdm_core.storage.sql.database import Database

if TYPE_CHECKING:
    from mdm_core.storage.sql.compliance import SqlComplianceStore
    from mdm_core.storage.sql.directory import (
        SqlDirectoryGroupStore,
        SqlDirectoryUserStore,
        SqlMembershipStore,
    )
    from mdm_core.storage.sql.outbox import SqlOutboxStore
    from mdm_core.storage.sql.posture import SqlPostureStore
    from mdm_core.storage.sql.queue import SqlCommandStore

__all__ = ["SqlUnitOfWork", "SqlStorage"]


class SqlUnitOfWork:
    """Stores are created on first use and share ``conn`` (one transaction).

    Add one ``functools.cached_property`` per concern, importing its module lazily.
    """

    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    @cached_property
    def outbox(self) -> SqlOutboxStore:
        from mdm_core.storage.sql.outbox import SqlOutboxStore

        return SqlOutboxStore(self.conn, self.dialect)

    @cached_property
    def posture(self) -> SqlPostureStore:
        from mdm_core.storage.sql.posture import SqlPostureStore

        return SqlPostureStore(self.conn, self.dialect)

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

        return SqlMembershipStore(self.conn, self.dialect)

    @cached_property
    def compliance(self) -> SqlComplianceStore:
        from mdm_core.storage.sql.compliance import SqlComplianceStore

        return SqlComplianceStore(self.conn, self.dialect)


class SqlStorage:
    """:class:`mdm_core.storage.uow.Storage` on a :class:`Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @contextmanager
    def unit_of_work(self) -> Iterator[SqlUnitOfWork]:
        with self.database.transaction() as conn:
            yield SqlUnitOfWork(conn, self.database.dialect)
