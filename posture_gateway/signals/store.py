"""SQL store of the transmitter: streams, subjects and the durable delivery queue.

One class over one ``Connection`` (the caller owns the transaction): the outbox listener uses
the unit of work's connection, the API and the delivery worker their own transactions
(:meth:`SignalStore.transaction`). Same code on SQLite and PostgreSQL
(``tests/contracts/test_ssf_store.py``).

Claiming (:meth:`SignalStore.claim_push`): due rows of enabled push streams are selected
(PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite has one writer) and leased (``lease_until``)
in one short transaction; the HTTP call happens outside it and the outcome is settled in
another. A worker that dies mid-call leaves the lease to expire: the row is sent again
(at-least-once; the same ``jti`` lets the receiver drop the duplicate).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.encoding import as_utc
from posture_gateway.signals.tables import ssf_deliveries, ssf_streams, ssf_subjects

__all__ = ["SignalStore", "StreamRow", "DeliveryRow", "NewDelivery", "open_store"]


@dataclass(frozen=True, slots=True)
class StreamRow:
    stream_id: str
    client_id: str
    config: dict[str, Any]
    status: str
    reason: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def method(self) -> str:
        return str(self.config.get("delivery", {}).get("method", ""))


@dataclass(frozen=True, slots=True)
class NewDelivery:
    stream_id: str
    jti: str
    txn: str
    event_type: str
    claims: dict[str, Any]
    method: str


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    stream_id: str
    jti: str
    event_type: str
    claims: dict[str, Any]
    attempts: int
    created_at: datetime
    endpoint_url: str | None = None
    authorization_header: str | None = None


def _stream(row: Any) -> StreamRow:
    return StreamRow(
        stream_id=row.stream_id,
        client_id=row.client_id,
        config=dict(row.config),
        status=row.status,
        reason=row.reason,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


class SignalStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    # ---- streams ------------------------------------------------------------------------

    def create_stream(self, stream: StreamRow) -> None:
        self.conn.execute(
            insert(ssf_streams).values(
                stream_id=stream.stream_id,
                client_id=stream.client_id,
                config=stream.config,
                status=stream.status,
                reason=stream.reason,
                created_at=stream.created_at,
                updated_at=stream.updated_at,
            )
        )

    def get_stream(self, stream_id: str, *, lock: bool = False) -> StreamRow | None:
        stmt = select(ssf_streams).where(ssf_streams.c.stream_id == stream_id)
        if lock and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        return _stream(row) if row is not None else None

    def streams_of(self, client_id: str) -> list[StreamRow]:
        stmt = (
            select(ssf_streams)
            .where(ssf_streams.c.client_id == client_id)
            .order_by(ssf_streams.c.created_at, ssf_streams.c.stream_id)
        )
        return [_stream(r) for r in self.conn.execute(stmt)]

    def live_streams(self) -> list[StreamRow]:
        """Streams that take new events: enabled (sent) and paused (held)."""
        stmt = select(ssf_streams).where(ssf_streams.c.status != "disabled")
        return [_stream(r) for r in self.conn.execute(stmt)]

    def update_stream(
        self,
        stream_id: str,
        *,
        config: Mapping[str, Any] | None = None,
        status: str | None = None,
        reason: str | None = None,
        at: datetime,
    ) -> None:
        values: dict[str, Any] = {"updated_at": at}
        if config is not None:
            values["config"] = dict(config)
        if status is not None:
            values["status"] = status
            values["reason"] = reason
        self.conn.execute(
            update(ssf_streams).where(ssf_streams.c.stream_id == stream_id).values(**values)
        )

    def delete_stream(self, stream_id: str) -> None:
        for table in (ssf_deliveries, ssf_subjects):
            self.conn.execute(delete(table).where(table.c.stream_id == stream_id))
        self.conn.execute(delete(ssf_streams).where(ssf_streams.c.stream_id == stream_id))

    # ---- subjects -----------------------------------------------------------------------

    def put_subject(
        self, stream_id: str, key: str, subject: Mapping[str, Any], included: bool, at: datetime
    ) -> None:
        table = ssf_subjects
        where = and_(table.c.stream_id == stream_id, table.c.subject_key == key)
        done = self.conn.execute(
            update(table)
            .where(where)
            .values(subject=dict(subject), included=included, updated_at=at)
        )
        if done.rowcount == 0:
            self.conn.execute(
                insert(table).values(
                    stream_id=stream_id,
                    subject_key=key,
                    subject=dict(subject),
                    included=included,
                    updated_at=at,
                )
            )

    def count_subjects(self, stream_id: str) -> int:
        stmt = select(func.count()).where(ssf_subjects.c.stream_id == stream_id)
        return int(self.conn.execute(stmt).scalar_one())

    def matching_subjects(
        self, stream_ids: Sequence[str], keys: Sequence[str]
    ) -> dict[str, list[bool]]:
        """Per stream, the ``included`` flags of its subjects among ``keys``."""
        out: dict[str, list[bool]] = {}
        if not stream_ids or not keys:
            return out
        stmt = select(ssf_subjects.c.stream_id, ssf_subjects.c.included).where(
            ssf_subjects.c.stream_id.in_(list(stream_ids)),
            ssf_subjects.c.subject_key.in_(list(keys)),
        )
        for row in self.conn.execute(stmt):
            out.setdefault(row.stream_id, []).append(bool(row.included))
        return out

    # ---- deliveries ---------------------------------------------------------------------

    def enqueue(self, rows: Sequence[NewDelivery], at: datetime) -> None:
        if not rows:
            return
        self.conn.execute(
            insert(ssf_deliveries),
            [
                {
                    "stream_id": r.stream_id,
                    "jti": r.jti,
                    "txn": r.txn,
                    "event_type": r.event_type,
                    "claims": r.claims,
                    "method": r.method,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": at,
                    "lease_until": None,
                    "created_at": at,
                }
                for r in rows
            ],
        )

    def claim_push(self, now: datetime, lease_until: datetime, limit: int) -> list[DeliveryRow]:
        d, s = ssf_deliveries, ssf_streams
        stmt = (
            select(
                d.c.id,
                d.c.stream_id,
                d.c.jti,
                d.c.event_type,
                d.c.claims,
                d.c.attempts,
                d.c.created_at,
                s.c.config,
            )
            .join(s, s.c.stream_id == d.c.stream_id)
            .where(
                d.c.state == "pending",
                d.c.method == "push",
                d.c.next_attempt_at <= now,
                or_(d.c.lease_until.is_(None), d.c.lease_until <= now),
                s.c.status == "enabled",
            )
            .order_by(d.c.id)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=d)
        rows = list(self.conn.execute(stmt))
        if not rows:
            return []
        self.conn.execute(
            update(d)
            .where(d.c.id.in_([r.id for r in rows]))
            .values(lease_until=lease_until, attempts=d.c.attempts + 1)
        )
        out = []
        for r in rows:
            delivery = dict(r.config).get("delivery", {})
            out.append(
                DeliveryRow(
                    id=int(r.id),
                    stream_id=r.stream_id,
                    jti=r.jti,
                    event_type=r.event_type,
                    claims=dict(r.claims),
                    attempts=int(r.attempts) + 1,
                    created_at=as_utc(r.created_at),
                    endpoint_url=delivery.get("endpoint_url"),
                    authorization_header=delivery.get("authorization_header"),
                )
            )
        return out

    def mark_delivered(self, ids: Sequence[int], at: datetime) -> None:
        if ids:
            self.conn.execute(
                update(ssf_deliveries)
                .where(ssf_deliveries.c.id.in_(list(ids)), ssf_deliveries.c.state == "pending")
                .values(state="delivered", delivered_at=at, lease_until=None, last_error=None)
            )

    def mark_retry(self, delivery_id: int, next_at: datetime, error: str) -> None:
        self.conn.execute(
            update(ssf_deliveries)
            .where(ssf_deliveries.c.id == delivery_id, ssf_deliveries.c.state == "pending")
            .values(next_attempt_at=next_at, lease_until=None, last_error=error[:1000])
        )

    def mark_failed(self, delivery_id: int, at: datetime, error: str) -> None:
        self.conn.execute(
            update(ssf_deliveries)
            .where(ssf_deliveries.c.id == delivery_id, ssf_deliveries.c.state == "pending")
            .values(state="failed", delivered_at=at, lease_until=None, last_error=error[:1000])
        )

    def drop_pending(self, stream_id: str) -> int:
        """Delete a stream's undelivered rows (the stream was disabled: SSF 8.1.2)."""
        done = self.conn.execute(
            delete(ssf_deliveries).where(
                ssf_deliveries.c.stream_id == stream_id, ssf_deliveries.c.state == "pending"
            )
        )
        return int(done.rowcount)

    def set_method(self, stream_id: str, method: str) -> None:
        self.conn.execute(
            update(ssf_deliveries)
            .where(ssf_deliveries.c.stream_id == stream_id, ssf_deliveries.c.state == "pending")
            .values(method=method, lease_until=None)
        )

    def pending_poll(self, stream_id: str, limit: int) -> tuple[list[DeliveryRow], bool]:
        """Up to ``limit`` unacknowledged SETs of a poll stream, oldest first, and whether
        more are waiting."""
        d = ssf_deliveries
        stmt = (
            select(
                d.c.id,
                d.c.stream_id,
                d.c.jti,
                d.c.event_type,
                d.c.claims,
                d.c.attempts,
                d.c.created_at,
            )
            .where(d.c.stream_id == stream_id, d.c.state == "pending", d.c.method == "poll")
            .order_by(d.c.id)
            .limit(limit + 1)
        )
        rows = list(self.conn.execute(stmt))
        out = [
            DeliveryRow(
                id=int(r.id),
                stream_id=r.stream_id,
                jti=r.jti,
                event_type=r.event_type,
                claims=dict(r.claims),
                attempts=int(r.attempts),
                created_at=as_utc(r.created_at),
            )
            for r in rows[:limit]
        ]
        return out, len(rows) > limit

    def settle_poll(
        self, stream_id: str, acks: Sequence[str], errors: Mapping[str, str], at: datetime
    ) -> list[datetime]:
        """Acknowledge ``acks`` and record ``errors`` (jti -> text) of the stream's poll rows;
        returns the creation times of the rows acknowledged now (latency)."""
        d = ssf_deliveries
        created: list[datetime] = []
        if acks:
            mine = and_(d.c.stream_id == stream_id, d.c.state == "pending", d.c.jti.in_(list(acks)))
            created = [
                as_utc(r.created_at) for r in self.conn.execute(select(d.c.created_at).where(mine))
            ]
            self.conn.execute(update(d).where(mine).values(state="delivered", delivered_at=at))
        for jti, error in errors.items():
            self.conn.execute(
                update(d)
                .where(d.c.stream_id == stream_id, d.c.state == "pending", d.c.jti == jti)
                .values(state="failed", delivered_at=at, last_error=error[:1000])
            )
        return created

    def delivery_states(self, stream_id: str) -> dict[str, str]:
        """jti -> state of a stream's rows (tests, the CLI)."""
        d = ssf_deliveries
        stmt = select(d.c.jti, d.c.state).where(d.c.stream_id == stream_id)
        return {r.jti: r.state for r in self.conn.execute(stmt)}

    def depth(self) -> int:
        stmt = select(func.count()).where(ssf_deliveries.c.state == "pending")
        return int(self.conn.execute(stmt).scalar_one())

    def next_due(self) -> datetime | None:
        """The earliest retry time of a pending push row of an enabled stream."""
        d, s = ssf_deliveries, ssf_streams
        stmt = (
            select(func.min(d.c.next_attempt_at))
            .join(s, s.c.stream_id == d.c.stream_id)
            .where(d.c.state == "pending", d.c.method == "push", s.c.status == "enabled")
        )
        value = self.conn.execute(stmt).scalar_one_or_none()
        return as_utc(value) if value is not None else None

    def purge(self, before: datetime) -> int:
        done = self.conn.execute(
            delete(ssf_deliveries).where(
                ssf_deliveries.c.state != "pending", ssf_deliveries.c.delivered_at < before
            )
        )
        return int(done.rowcount)


@contextmanager
def open_store(database: Database) -> Iterator[SignalStore]:
    """A store on a new transaction of ``database`` (committed when the block ends)."""
    with database.transaction() as conn:
        yield SignalStore(conn, database.dialect)
