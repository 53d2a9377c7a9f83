"""Operator actions on SSO sessions: list them, and revoke them audited.

Used by the admin API (``GET /admin/api/sessions``) and the CLI (``posture sessions list`` /
``revoke``). Revoking by device or user goes through :mod:`mdm_core.domain.device_lifecycle`
(``end_device_access`` / ``end_user_access``): the sessions AND every token of that device or
user end in one transaction, audited with the admin actor, with the ``access.revoked``
outbox event. Revoking one session (``--id``) ends it and the tokens issued in it, audited
(``sessions.revoked``), and writes the same event (scope ``device``, with ``session_id``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.domain.device_lifecycle import end_device_access, end_user_access
from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.oidc.tables import gateway_sso_sessions as t
from posture_gateway.sso.sql import revoke_sessions_on

__all__ = ["revoke_sessions"]


def revoke_sessions(
    storage: SqlStorage,
    *,
    actor: str,
    reason: str = "admin_revoked",
    public_id: str | None = None,
    user_id: str | None = None,
    device_id: str | None = None,
    at: datetime | None = None,
) -> int:
    """Revoke by exactly one selector; returns how many live credentials ended (for a device
    or user: sessions and tokens; for one session: 1 or 0). ``ValueError`` otherwise."""
    if sum(v is not None for v in (public_id, user_id, device_id)) != 1:
        raise ValueError("give exactly one of public_id, user_id, device_id")
    now = at or datetime.now(UTC)
    with storage.unit_of_work() as uow:
        if device_id is not None:
            return end_device_access(uow, device_id, reason=reason, at=now, actor=actor)
        if user_id is not None:
            return end_user_access(uow, user_id, reason=reason, at=now, actor=actor)
        row = uow.conn.execute(
            select(t.c.user_id, t.c.device_id).where(t.c.public_id == public_id)
        ).first()
        if row is None:
            return 0
        count = revoke_sessions_on(uow.conn, t.c.public_id == public_id, reason, now)
        uow.audit.record(
            actor,
            "sessions.revoked",
            row.device_id,
            "ok",
            {"reason": reason, "count": count, "session_id": public_id},
            at=now,
        )
        if count:
            uow.outbox.add(
                [
                    DomainEvent(
                        type=EventType.ACCESS_REVOKED,
                        subject=row.device_id,
                        payload={
                            "scope": "device",
                            "user_id": row.user_id,
                            "device_id": row.device_id,
                            "reason": reason,
                            "count": count,
                            "sessions": count,
                            "session_id": public_id,
                        },
                        occurred_at=now,
                    )
                ]
            )
        return count
