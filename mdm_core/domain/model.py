"""Core records shared across the MDM core: devices and their lifecycle states.

These are plain frozen dataclasses (no I/O); stores return them and services pass them around.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from mdm_core.posture.model import Ownership, Platform

__all__ = ["DeviceStatus", "DeviceRecord"]


class DeviceStatus(StrEnum):
    """Lifecycle of a device.

    - ``active``: enrolled, may check in and may be granted access if compliant.
    - ``quarantined``: a critical rule failed; may check in (to receive commands) but never
      gets access until a person lets it out (an admin release, or a re-enrollment with a
      fresh user-bound token; never by serial) and it passes a fresh check-in.
    - ``pending_verification``: released or token-re-enrolled after quarantine; becomes
      ``active`` at the first check-in that passes every critical rule, ``quarantined``
      again otherwise.
    - ``retired`` / ``wiped``: gone. Proofs from it are refused; access is blocked.
    """

    ACTIVE = "active"
    QUARANTINED = "quarantined"
    PENDING_VERIFICATION = "pending_verification"
    RETIRED = "retired"
    WIPED = "wiped"


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: str
    user_id: str
    platform: Platform
    ownership: Ownership
    status: DeviceStatus
    serial_number: str | None
    cert_serial: str | None
    key_thumbprint: str | None
    enrollment_generation: int
    enrolled_at: datetime
    last_checkin_at: datetime | None
    status_reason: str | None = None
