"""Leaving quarantine: the admin release of a quarantined device.

A device is quarantined by a critical compliance failure (:mod:`mdm_core.policy.compliance_hook`)
and nothing the device can do alone gets it out: its check-ins are self-reported, and its
serial and enrollment secret live on the device that failed. Quarantine is left through a
person, in one of two ways:

- an admin **releases** it (:meth:`QuarantineService.release`, ``posture device release``):
  ``quarantined`` -> ``pending_verification``, audited with who and why;
- the user re-enrolls it with a fresh user-bound enrollment token (issued by an admin or the
  directory; :mod:`mdm_core.device.enrollment`).

Either way the device then still has to pass a fresh check-in (``pending_verification`` ->
``active``) before it gets access: the release vouches for the device, not for its posture.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from mdm_core.domain.device_lifecycle import change_status
from mdm_core.domain.errors import BadRequest, Conflict, NotFound
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.storage.uow import Storage

__all__ = ["QuarantineService"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class QuarantineService:
    """Admin actions on quarantined devices."""

    def __init__(self, storage: Storage, *, clock: Callable[[], datetime] = _utcnow) -> None:
        if storage is None:
            raise ValueError("QuarantineService needs storage")
        self._storage = storage
        self._clock = clock

    def release(self, device_id: str, *, actor: str, reason: str) -> DeviceRecord:
        """Release a quarantined device to ``pending_verification``; returns the record.

        Raises :class:`~mdm_core.domain.errors.NotFound` for an unknown device,
        :class:`~mdm_core.domain.errors.Conflict` when it is not quarantined (nothing changes), and
        :class:`~mdm_core.domain.errors.BadRequest` without an actor or a reason.
        """
        if not actor or not reason or not reason.strip():
            raise BadRequest("a release needs who releases the device and why")
        now = self._clock()
        with self._storage.unit_of_work() as uow:
            device = uow.devices.get(device_id)
            if device is None:
                raise NotFound(f"unknown device {device_id}")
            if device.status is not DeviceStatus.QUARANTINED:
                raise Conflict(f"device {device_id} is {device.status.value}, not quarantined")
            updated = change_status(
                uow,
                device_id,
                DeviceStatus.PENDING_VERIFICATION,
                reason=f"released from quarantine by {actor[:128]}: {reason[:500]}",
                at=now,
                actor=actor[:128],
            )
            uow.audit.record(
                actor=actor[:128],
                action="device.release",
                subject=device_id,
                outcome="ok",
                detail={
                    "reason": reason[:500],
                    "previous_status": device.status.value,
                    "previous_reason": device.status_reason,
                    "status": updated.status.value,
                },
                at=now,
            )
        return updated
