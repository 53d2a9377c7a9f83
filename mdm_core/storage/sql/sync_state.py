"""SQL implementation of :mod:`mdm_core.storage.sync_state` (entries, cursors, leases).

A lease is taken with one conditional ``UPDATE`` (free or expired or ours), or an ``INSERT``
when no row exists yet, inside a savepoint: two processes racing for a new lease cannot both
win, and the loser sees ``False``, not a database error.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from mdm_core.storage.directory import MemberKind
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import directory_source_entries, directory_sync_state, leases
from mdm_core.storage.sync_state import SourceEntry, SyncCursor

__all__ = ["SqlSourceEntryStore", "SqlSyncCursorStore", "SqlLeaseStore"]

_CHUNK = 500  # ids per IN (...) list: SQLite's variable limit stays far away


class SqlSourceEntryStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def entries(self, source: str) -> dict[str, SourceEntry]:
        t = directory_source_entries
        rows = self.conn.execute(
            select(t.c.entry_id, t.c.kind, t.c.entry_key).where(t.c.source == source)
        )
        return {r.entry_id: SourceEntry(r.entry_id, MemberKind(r.kind), r.entry_key) for r in rows}

    def put(self, source: str, entries: Collection[SourceEntry]) -> None:
        if not entries:
            return
        self.remove(source, [e.entry_id for e in entries])
        rows: list[dict[str, Any]] = [
            {"source": source, "entry_id": e.entry_id, "kind": e.kind.value, "entry_key": e.key}
            for e in entries
        ]
        self.conn.execute(insert(directory_source_entries), rows)

    def remove(self, source: str, entry_ids: Collection[str]) -> int:
        t = directory_source_entries
        ids = list(entry_ids)
        removed = 0
        for i in range(0, len(ids), _CHUNK):
            result = self.conn.execute(
                delete(t).where(t.c.source == source, t.c.entry_id.in_(ids[i : i + _CHUNK]))
            )
            removed += result.rowcount
        return removed


class SqlSyncCursorStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def get(self, source: str) -> SyncCursor | None:
        t = directory_sync_state
        row = self.conn.execute(select(t).where(t.c.source == source)).one_or_none()
        if row is None:
            return None
        return SyncCursor(
            source=row.source,
            cursor=row.cursor,
            last_full_at=as_utc(row.last_full_at) if row.last_full_at is not None else None,
            updated_at=as_utc(row.updated_at),
        )

    def put(
        self, source: str, cursor: str | None, *, at: datetime, full: bool = False
    ) -> SyncCursor:
        t = directory_sync_state
        at = as_utc(at)
        existing = self.get(source)
        values: dict[str, Any] = {"cursor": cursor, "updated_at": at}
        if full:
            values["last_full_at"] = at
        if existing is None:
            self.conn.execute(insert(t).values(source=source, **values))
        else:
            self.conn.execute(update(t).where(t.c.source == source).values(**values))
        stored = self.get(source)
        assert stored is not None  # written just above, in this transaction
        return stored


class SqlLeaseStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def acquire(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
        if ttl <= timedelta(0):
            raise ValueError("a lease needs a positive ttl")
        now = as_utc(now)
        until = now + ttl
        taken = self.conn.execute(
            update(leases)
            .where(
                leases.c.name == name,
                or_(leases.c.expires_at <= now, leases.c.holder == holder),
            )
            .values(holder=holder, expires_at=until)
        )
        if taken.rowcount == 1:
            return True
        if self.conn.execute(select(leases.c.name).where(leases.c.name == name)).first():
            return False  # another holder's lease is still valid
        try:
            with self.conn.begin_nested():
                self.conn.execute(insert(leases).values(name=name, holder=holder, expires_at=until))
        except IntegrityError:  # another process inserted it first: theirs
            return False
        return True

    def release(self, name: str, holder: str) -> bool:
        result = self.conn.execute(
            delete(leases).where(leases.c.name == name, leases.c.holder == holder)
        )
        return bool(result.rowcount)

    def holders(self) -> Mapping[str, tuple[str, datetime]]:
        rows = self.conn.execute(select(leases))
        return {r.name: (r.holder, as_utc(r.expires_at)) for r in rows}
