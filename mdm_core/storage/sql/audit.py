"""SQL implementation of :class:`mdm_core.storage.audit.AuditStore` (``audit_log``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from mdm_core.storage.audit import AuditEntry
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import audit_log

__all__ = ["SqlAuditStore"]

_INSERT = insert(audit_log)


class SqlAuditStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def record(
        self,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        detail: dict[str, Any],
        *,
        at: datetime | None = None,
    ) -> None:
        self.conn.execute(
            _INSERT,
            {
                "at": as_utc(at) if at else datetime.now(UTC),
                "actor": actor[:128],
                "action": action[:64],
                "subject": subject[:128],
                "outcome": outcome[:32],
                "detail": detail,
            },
        )

    def recent(self, subject: str, limit: int = 50) -> list[AuditEntry]:
        rows = self.conn.execute(
            select(audit_log)
            .where(audit_log.c.subject == subject)
            .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
            .limit(limit)
        )
        return [
            AuditEntry(
                id=int(row.id),
                at=as_utc(row.at),
                actor=row.actor,
                action=row.action,
                subject=row.subject,
                outcome=row.outcome,
                detail=dict(row.detail),
            )
            for row in rows
        ]
