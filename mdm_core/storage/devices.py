"""Device records: the store contract for creating devices and changing their identity/status.

A device row holds the *current* identity (certificate serial, public key, key thumbprint);
past certificates live in :mod:`mdm_core.storage.certauth`. Status changes follow
:class:`mdm_core.domain.model.DeviceStatus`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from mdm_core.domain.model import DeviceRecord, DeviceStatus

__all__ = ["DeviceStore"]


class DeviceStore(Protocol):
    def get(self, device_id: str) -> DeviceRecord | None:
        """The device, or ``None`` for an unknown id."""
        ...

    def create(self, device: DeviceRecord, *, public_key: bytes) -> None:
        """Insert a new device with its DER SubjectPublicKeyInfo.

        Raises :class:`mdm_core.domain.errors.Conflict` when the id already exists.
        """
        ...

    def update_status(
        self, device_id: str, status: DeviceStatus, *, reason: str | None, at: datetime
    ) -> DeviceRecord:
        """Set status and status reason; returns the updated record.

        Raises :class:`mdm_core.domain.errors.NotFound` for an unknown id.
        """
        ...

    def set_identity(
        self,
        device_id: str,
        *,
        cert_serial: str,
        public_key: bytes,
        key_thumbprint: str,
        status: DeviceStatus,
        status_reason: str | None,
        expected_generation: int,
        new_generation: int,
        at: datetime,
    ) -> DeviceRecord:
        """Replace the device's identity (re-enrolment or renewal) atomically.

        Only succeeds if the stored ``enrollment_generation`` still equals
        ``expected_generation`` (compare-and-set, so two concurrent re-enrolments cannot both
        win); sets it to ``new_generation``. Raises :class:`mdm_core.domain.errors.NotFound` for an
        unknown id and :class:`mdm_core.domain.errors.Conflict` when the generation moved.
        """
        ...

    def list_for_user(self, user_id: str) -> list[DeviceRecord]:
        """Every device of ``user_id`` (any status), oldest enrolment first; ``[]`` if none."""
        ...
