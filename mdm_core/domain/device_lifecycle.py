"""Device status changes and the end of access they cause, in the caller's unit of work.

Every place in the MDM core where a device becomes quarantined, retired (certificate
revocation) or wiped, or gets a new identity (re-enrollment), and where a user is disabled,
goes through this module, so that the credentials the access plane issued from that device or
to that user (``uow.credentials``, :mod:`mdm_core.storage.credentials`) are revoked **in the
same transaction**: if the revocation fails the status change rolls back, and the reverse.
A test (``tests/unit/mdm_core/test_device_lifecycle.py``) makes sure no other module calls
``uow.devices.update_status``.

Each revocation is audited (``credentials.revoked``) in the same unit of work, and one that
ended at least one live credential writes ONE ``access.revoked`` event to the outbox in that
same unit of work (:data:`mdm_core.bus.events.EventType.ACCESS_REVOKED`): the gateway
instances, the signals transmitter and anything else that must react to the end of access
learn it through the outbox relay, so a crash after the commit loses nothing.
"""

from __future__ import annotations

from datetime import datetime

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.storage.credentials import SESSIONS, Revoked
from mdm_core.storage.uow import UnitOfWork

__all__ = ["ACCESS_ENDING", "change_status", "end_device_access", "end_user_access"]

#: Statuses that end every credential obtained from the device.
ACCESS_ENDING = frozenset({DeviceStatus.QUARANTINED, DeviceStatus.RETIRED, DeviceStatus.WIPED})


def change_status(
    uow: UnitOfWork,
    device_id: str,
    status: DeviceStatus,
    *,
    reason: str | None,
    at: datetime,
    actor: str = "system",
) -> DeviceRecord:
    """Set the device's status; one in :data:`ACCESS_ENDING` also revokes its credentials.

    Raises :class:`mdm_core.domain.errors.NotFound` for an unknown device (nothing revoked).
    """
    record = uow.devices.update_status(device_id, status, reason=reason, at=at)
    if status in ACCESS_ENDING:
        end_device_access(uow, device_id, reason=f"device_{status.value}", at=at, actor=actor)
    return record


def end_device_access(
    uow: UnitOfWork, device_id: str, *, reason: str, at: datetime, actor: str = "system"
) -> int:
    """Revoke every credential obtained from ``device_id``; returns how many were live."""
    revoked = uow.credentials.device(device_id, reason=reason, at=at)
    uow.audit.record(
        actor,
        "credentials.revoked",
        device_id,
        "ok",
        {"reason": reason, "count": revoked.count},
        at=at,
    )
    if revoked.count:
        device = uow.devices.get(device_id)
        _access_revoked(
            uow,
            subject=device_id,
            scope="device",
            user_id=device.user_id if device is not None else "",
            device_id=device_id,
            reason=reason,
            revoked=revoked,
            at=at,
        )
    return revoked.count


def end_user_access(
    uow: UnitOfWork, user_id: str, *, reason: str, at: datetime, actor: str = "system"
) -> int:
    """Revoke every credential of ``user_id`` (all devices); returns how many were live."""
    revoked = uow.credentials.user(user_id, reason=reason, at=at)
    uow.audit.record(
        actor,
        "credentials.revoked",
        f"user:{user_id}",
        "ok",
        {"reason": reason, "count": revoked.count},
        at=at,
    )
    if revoked.count:
        _access_revoked(
            uow,
            subject=user_id,
            scope="user",
            user_id=user_id,
            device_id=None,
            reason=reason,
            revoked=revoked,
            at=at,
        )
    return revoked.count


def _access_revoked(
    uow: UnitOfWork,
    *,
    subject: str,
    scope: str,
    user_id: str,
    device_id: str | None,
    reason: str,
    revoked: Revoked,
    at: datetime,
) -> None:
    uow.outbox.add(
        [
            DomainEvent(
                type=EventType.ACCESS_REVOKED,
                subject=subject,
                payload={
                    "scope": scope,
                    "user_id": user_id,
                    "device_id": device_id,
                    "reason": reason,
                    "count": revoked.count,
                    "sessions": revoked.of(SESSIONS),
                },
                occurred_at=at,
            )
        ]
    )
