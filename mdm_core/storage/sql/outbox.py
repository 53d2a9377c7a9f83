"""SQL implementation of :class:`mdm_core.storage.outbox.OutboxStore`.

``add`` inserts at once. ``add_at_commit`` (the check-in's hot path) keeps the rows until the
unit of work commits (so they follow every row ``add`` wrote in it): on PostgreSQL the unit
of work then sends them in ONE round trip with its COMMIT
(:meth:`mdm_core.storage.sql.database.Database.commit_pipelined`); on SQLite, and inside a
shared transaction the unit of work does not commit itself, they are inserted when the
block ends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, delete, insert, select, update

from mdm_core.bus.events import DomainEvent
from mdm_core.storage.outbox import OutboxEntry
from mdm_core.storage.sql.encoding import as_utc, json_param
from mdm_core.storage.sql.tables import outbox

__all__ = ["OUTBOX_INSERT_PG", "SqlOutboxStore"]

# Built once per dialect: a statement built per unit of work costs its cache key every time.
_INSERT: dict[str, Insert] = {
    dialect: insert(outbox).values(payload=json_param("payload_json", dialect))
    for dialect in ("postgresql", "sqlite")
}

#: The same insert as driver SQL (psycopg's parameter style), for the pipelined commit.
OUTBOX_INSERT_PG = (
    "INSERT INTO outbox (event_id, type, subject, payload, occurred_at) VALUES "
    "(%(event_id)s, %(type)s, %(subject)s, CAST(%(payload_json)s AS JSON), %(occurred_at)s)"
)


def _rows(events: Sequence[DomainEvent]) -> list[dict[str, Any]]:
    return [
        {
            "event_id": e.id,
            "type": e.type,
            "subject": e.subject,
            "payload_json": json.dumps(e.payload, separators=(",", ":")),
            "occurred_at": e.occurred_at,
        }
        for e in events
    ]


class SqlOutboxStore:
    def __init__(
        self,
        conn: Connection,
        dialect: str,
        at_commit: list[tuple[str, list[dict[str, Any]]]] | None = None,
    ) -> None:
        self.conn = conn
        self.dialect = dialect
        self._insert = _INSERT[dialect]
        # PostgreSQL: the unit of work's list of writes sent with its COMMIT.
        self._at_commit = at_commit if dialect == "postgresql" else None
        #: Rows of ``add_at_commit`` not written yet (SQLite, or no unit-of-work list).
        self.kept: list[dict[str, Any]] = []

    def add(self, events: Sequence[DomainEvent]) -> None:
        if not events:
            return
        self.conn.execute(self._insert, _rows(events))

    def add_at_commit(self, events: Sequence[DomainEvent]) -> None:
        if not events:
            return
        if self._at_commit is not None:
            self._at_commit.append((OUTBOX_INSERT_PG, _rows(events)))
        else:
            self.kept.extend(_rows(events))

    def flush(self) -> None:
        """Insert the rows ``add_at_commit`` kept here, now (the unit of work calls this
        before it commits)."""
        rows, self.kept = self.kept, []
        if rows:
            self.conn.execute(self._insert, rows)

    def fetch_unpublished(self, limit: int) -> list[OutboxEntry]:
        stmt = (
            select(
                outbox.c.id,
                outbox.c.event_id,
                outbox.c.type,
                outbox.c.subject,
                outbox.c.payload,
                outbox.c.occurred_at,
            )
            .where(outbox.c.published_at.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return [
            OutboxEntry(
                id=int(row.id),
                event=DomainEvent(
                    id=row.event_id,
                    type=row.type,
                    subject=row.subject,
                    payload=dict(row.payload),
                    occurred_at=as_utc(row.occurred_at),
                ),
            )
            for row in self.conn.execute(stmt)
        ]

    def mark_published(self, ids: Sequence[int], at: datetime) -> None:
        if not ids:
            return
        self.conn.execute(update(outbox).where(outbox.c.id.in_(list(ids))).values(published_at=at))

    def purge_published(self, before: datetime) -> int:
        result = self.conn.execute(
            delete(outbox).where(outbox.c.published_at.is_not(None), outbox.c.published_at < before)
        )
        return int(result.rowcount)
