"""Device status changes and the end of access they cause, in the caller's unit of work.

Every place in the MDM core where a device becomes quarantined, retired (certificate
revocation) or wiped, or gets a new identity (re-enrollment), and where a user is disabled,
goes through this module, so that the credentials the access plane issued from that device or
to that user (``uow.credentials``, :mod:`mdm_core.storage.credentials`) are revoked **in the
same transaction**: if the revocation fails the status change rolls back, and the reverse.
A test (``tests/unit/mdm_core/test_device_lifecycle.py``) makes sure no other module calls
``uow.devices.update_status``.

Each revocation is audited (``credentials.revoked``) in the same unit of work.
"""

from __future__ import annotations

from datetime import datetime

from mdm_core.domain.model import DeviceRecord, DeviceStatus
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
    count = uow.credentials.revoke_for_device(device_id, reason=reason, at=at)
    uow.audit.record(
        actor, "credentials.revoked", device_id, "ok", {"reason": reason, "count": count}, at=at
    )
    return count


def end_user_access(
    uow: UnitOfWork, user_id: str, *, reason: str, at: datetime, actor: str = "system"
) -> int:
    """Revoke every credential of ``user_id`` (all devices); returns how many were live."""
    count = uow.credentials.revoke_for_user(user_id, reason=reason, at=at)
    uow.audit.record(
        actor,
        "credentials.revoked",
        f"user:{user_id}",
        "ok",
        {"reason": reason, "count": count},
        at=at,
    )
    return count
