"""SQL implementation of :class:`mdm_core.storage.outbox.OutboxStore`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, Insert, delete, insert, select, update

from mdm_core.bus.events import DomainEvent
from mdm_core.storage.outbox import OutboxEntry, OutboxListener
from mdm_core.storage.sql.encoding import as_utc, json_param
from mdm_core.storage.sql.tables import outbox

__all__ = ["SqlOutboxStore"]

# Built once per dialect: a statement built per unit of work costs its cache key every time.
_INSERT: dict[str, Insert] = {
    dialect: insert(outbox).values(payload=json_param("payload_json", dialect))
    for dialect in ("postgresql", "sqlite")
}


class SqlOutboxStore:
    def __init__(
        self, conn: Connection, dialect: str, listeners: Sequence[OutboxListener] = ()
    ) -> None:
        self.conn = conn
        self.dialect = dialect
        self._insert = _INSERT[dialect]
        self._listeners = tuple(listeners)

    def add(self, events: Sequence[DomainEvent]) -> None:
        if not events:
            return
        rows = [
            {
                "event_id": e.id,
                "type": e.type,
                "subject": e.subject,
                "payload_json": json.dumps(e.payload, separators=(",", ":")),
                "occurred_at": e.occurred_at,
            }
            for e in events
        ]
        self.conn.execute(self._insert, rows)
        for listener in self._listeners:  # same connection: commits with the events
            listener.events_added(events)

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
