"""SQL store of HR deliveries (``hr_deliveries``), over one ``Connection``: the caller owns
the transaction (the webhook's unit of work, so the record commits with the offboarding it
requested). Same code on SQLite and PostgreSQL (``tests/contracts/test_hr_delivery_store.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, tuple_
from sqlalchemy.exc import IntegrityError

from mdm_core.storage.sql.encoding import as_utc
from posture_gateway.hr.tables import hr_deliveries

__all__ = ["DeliveryRecord", "DeliveryExists", "HrDeliveryStore"]


class DeliveryExists(Exception):
    """A record with the same ``(source, delivery_key, seq)`` is already stored (a concurrent
    redelivery won); the transaction must be rolled back."""


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    source: str
    delivery_key: str
    seq: int
    body_sha256: str
    employee_ref: str
    event: str
    outcome: str
    received_at: datetime
    user_id: str | None = None
    job_id: str | None = None
    source_ref: str | None = None
    effective_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "delivery_key": self.delivery_key,
            "seq": self.seq,
            "employee_ref": self.employee_ref,
            "user_id": self.user_id,
            "event": self.event,
            "outcome": self.outcome,
            "job_id": self.job_id,
            "source_ref": self.source_ref,
            "effective_at": self.effective_at.isoformat() if self.effective_at else None,
            "detail": dict(self.detail),
            "received_at": self.received_at.isoformat(),
        }


def _record(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        source=row.source,
        delivery_key=row.delivery_key,
        seq=row.seq,
        body_sha256=row.body_sha256,
        employee_ref=row.employee_ref,
        event=row.event,
        outcome=row.outcome,
        received_at=as_utc(row.received_at),
        user_id=row.user_id,
        job_id=row.job_id,
        source_ref=row.source_ref,
        effective_at=as_utc(row.effective_at) if row.effective_at is not None else None,
        detail=dict(row.detail),
    )


class HrDeliveryStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, source: str, delivery_key: str) -> list[DeliveryRecord]:
        """The records of one delivery, by ``seq``; ``[]`` for a delivery never accepted."""
        stmt = (
            select(hr_deliveries)
            .where(hr_deliveries.c.source == source, hr_deliveries.c.delivery_key == delivery_key)
            .order_by(hr_deliveries.c.seq)
        )
        return [_record(r) for r in self.conn.execute(stmt)]

    def add(self, records: Sequence[DeliveryRecord]) -> None:
        """Insert the records of one delivery in one statement. Raises
        :class:`DeliveryExists` when one of them is already stored (nothing is inserted)."""
        if not records:
            return
        rows = [
            {
                "source": r.source,
                "delivery_key": r.delivery_key,
                "seq": r.seq,
                "body_sha256": r.body_sha256,
                "employee_ref": r.employee_ref,
                "user_id": r.user_id,
                "event": r.event,
                "outcome": r.outcome,
                "job_id": r.job_id,
                "source_ref": r.source_ref,
                "effective_at": as_utc(r.effective_at) if r.effective_at else None,
                "detail": dict(r.detail),
                "received_at": as_utc(r.received_at),
            }
            for r in records
        ]
        try:
            self.conn.execute(insert(hr_deliveries), rows)
        except IntegrityError as exc:
            raise DeliveryExists(str(records[0].delivery_key)) from exc

    def list(
        self,
        *,
        outcome: str | None = None,
        source: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        """The newest records first (at most ``limit``), filtered; ``[]`` when none."""
        stmt = select(hr_deliveries)
        if outcome is not None:
            stmt = stmt.where(hr_deliveries.c.outcome == outcome)
        if source is not None:
            stmt = stmt.where(hr_deliveries.c.source == source)
        if user_id is not None:
            stmt = stmt.where(hr_deliveries.c.user_id == user_id)
        stmt = stmt.order_by(
            hr_deliveries.c.received_at.desc(),
            hr_deliveries.c.delivery_key,
            hr_deliveries.c.seq,
        ).limit(limit)
        return [_record(r) for r in self.conn.execute(stmt)]

    def purge(self, before: datetime, *, limit: int = 200) -> int:
        """Delete at most ``limit`` records received before ``before`` (the oldest first), in
        one statement; the number deleted."""
        oldest = (
            select(hr_deliveries.c.source, hr_deliveries.c.delivery_key, hr_deliveries.c.seq)
            .where(hr_deliveries.c.received_at < as_utc(before))
            .order_by(hr_deliveries.c.received_at)
            .limit(limit)
        )
        key = tuple_(hr_deliveries.c.source, hr_deliveries.c.delivery_key, hr_deliveries.c.seq)
        result = self.conn.execute(delete(hr_deliveries).where(key.in_(oldest)))
        return int(result.rowcount)
