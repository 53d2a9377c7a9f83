"""SQL implementation of :mod:`mdm_core.storage.staleness` (the sweep's candidate query).

One range query on ``posture_latest.received_at`` (index ``ix_posture_latest_received_at``,
migration ``0009_stale_sweep``) joined by primary key to ``devices`` and ``compliance_state``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, false, or_, select, update

from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import compliance_state, devices, posture_latest
from mdm_core.storage.staleness import StaleCandidate

__all__ = ["SqlStalePostureStore", "SWEPT_STATUSES"]

#: Statuses that still let a device in: the others revoked its access when they were set.
SWEPT_STATUSES = ("active", "pending_verification")


class SqlStalePostureStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def candidates(
        self, cutoff: datetime, *, after: StaleCandidate | None, limit: int
    ) -> list[StaleCandidate]:
        if limit <= 0:
            raise ValueError("limit must be positive")
        p = posture_latest
        query = (
            select(p.c.device_id, p.c.received_at)
            .select_from(
                p.join(devices, devices.c.id == p.c.device_id).outerjoin(
                    compliance_state, compliance_state.c.device_id == p.c.device_id
                )
            )
            .where(
                p.c.received_at < as_utc(cutoff),
                devices.c.status.in_(SWEPT_STATUSES),
                or_(compliance_state.c.outcome.is_(None), compliance_state.c.outcome != "block"),
            )
            .order_by(p.c.received_at, p.c.device_id)
            .limit(limit)
        )
        if after is not None:
            at = as_utc(after.received_at)
            query = query.where(
                or_(
                    p.c.received_at > at,
                    and_(p.c.received_at == at, p.c.device_id > after.device_id),
                )
            )
        return [
            StaleCandidate(row.device_id, as_utc(row.received_at))
            for row in self.conn.execute(query)
        ]

    def lock(self, device_id: str) -> datetime | None:
        p = posture_latest
        query = select(p.c.received_at).where(p.c.device_id == device_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        else:
            # pysqlite runs a SELECT outside any transaction: a write that matches no row
            # begins it and takes SQLite's write lock now (waiting out a check-in in progress),
            # so everything read below is what the unit of work commits against. No row is
            # touched, so no read-model version is bumped.
            self.conn.execute(
                update(p).where(p.c.device_id == device_id, false()).values(seq=p.c.seq)
            )
        found = self.conn.execute(query).scalar_one_or_none()
        return None if found is None else as_utc(found)
