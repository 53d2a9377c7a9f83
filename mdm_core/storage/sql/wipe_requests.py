"""SQL implementation of :class:`mdm_core.storage.wipe_requests.WipeRequestStore`.

``create`` is one ``INSERT ... ON CONFLICT (open_device_id) DO NOTHING RETURNING``: a racing
twin waits for the winner's commit, inserts nothing and reads the winner's row. ``get(...,
lock=True)`` holds the row (``FOR UPDATE`` on PostgreSQL; on SQLite a no-op write takes the
database write lock first, as :mod:`mdm_core.storage.sql.staleness` does).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, false, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mdm_core.device.wipe_model import WipeRequest, WipeRequestNotFound, WipeRequestStatus
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import wipe_requests

__all__ = ["SqlWipeRequestStore"]

_T = wipe_requests


def _request(row: Row[Any]) -> WipeRequest:
    m = row._mapping
    return WipeRequest(
        id=m["id"],
        device_id=m["device_id"],
        user_id=m["user_id"],
        status=WipeRequestStatus(m["status"]),
        requested_by=m["requested_by"],
        reason=m["reason"],
        approvals=tuple(str(a) for a in m["approvals"]),
        command_id=m["command_id"],
        created_at=as_utc(m["created_at"]),
        updated_at=as_utc(m["updated_at"]),
        closed_by=m["closed_by"],
        close_reason=m["close_reason"],
    )


class SqlWipeRequestStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def create(self, request: WipeRequest) -> tuple[WipeRequest, bool]:
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = (
            dialect_insert(_T)
            .values(
                id=request.id,
                device_id=request.device_id,
                user_id=request.user_id,
                status=request.status.value,
                requested_by=request.requested_by,
                reason=request.reason,
                approvals=list(request.approvals),
                command_id=request.command_id,
                open_device_id=request.device_id,
                closed_by=None,
                close_reason=None,
                created_at=request.created_at,
                updated_at=request.updated_at,
            )
            .on_conflict_do_nothing(index_elements=[_T.c.open_device_id])
            .returning(_T.c.id)
        )
        if self.conn.execute(stmt).scalar_one_or_none() is not None:
            return request, True
        existing = self.open_for_device(request.device_id)
        if existing is None:  # closed between our insert and this read: not expected
            raise RuntimeError(f"open wipe request of {request.device_id} vanished")
        return existing, False

    def get(self, request_id: str, *, lock: bool = False) -> WipeRequest | None:
        query = select(_T).where(_T.c.id == request_id)
        if lock and self.dialect == "postgresql":
            query = query.with_for_update()
        elif lock:
            self.conn.execute(
                update(_T).where(_T.c.id == request_id, false()).values(status=_T.c.status)
            )
        row = self.conn.execute(query).one_or_none()
        return None if row is None else _request(row)

    def open_for_device(self, device_id: str) -> WipeRequest | None:
        row = self.conn.execute(select(_T).where(_T.c.open_device_id == device_id)).one_or_none()
        return None if row is None else _request(row)

    def update(
        self,
        request_id: str,
        *,
        status: WipeRequestStatus,
        approvals: tuple[str, ...],
        command_id: str | None,
        at: datetime,
        still_open: bool,
        closed_by: str | None = None,
        close_reason: str | None = None,
    ) -> WipeRequest:
        values: dict[str, Any] = {
            "status": status.value,
            "approvals": list(approvals),
            "command_id": command_id,
            "updated_at": at,
            "closed_by": closed_by,
            "close_reason": close_reason,
        }
        if not still_open:
            values["open_device_id"] = None
        row = self.conn.execute(
            update(_T).where(_T.c.id == request_id).values(values).returning(*_T.c)
        ).one_or_none()
        if row is None:
            raise WipeRequestNotFound(f"no wipe request {request_id!r}")
        return _request(row)

    def list(
        self,
        *,
        device_id: str | None = None,
        status: WipeRequestStatus | None = None,
        limit: int = 100,
    ) -> list[WipeRequest]:
        query = select(_T).order_by(_T.c.created_at.desc(), _T.c.id).limit(max(1, limit))
        if device_id is not None:
            query = query.where(_T.c.device_id == device_id)
        if status is not None:
            query = query.where(_T.c.status == status.value)
        return [_request(r) for r in self.conn.execute(query)]
