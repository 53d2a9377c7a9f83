"""Enrollment state: single-use enrollment tokens and pre-registered serial numbers.

Tokens, and the per-device enrollment secrets of registered serials, are stored only as
SHA-256 hex digests; the plaintext is shown once to the admin.
Redemption is one conditional ``UPDATE`` so two concurrent redemptions cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mdm_core.posture.model import Ownership, Platform

__all__ = [
    "EnrollmentTokenRecord",
    "RegisteredSerial",
    "EnrollmentTokenStore",
    "RegisteredSerialStore",
]


@dataclass(frozen=True, slots=True)
class EnrollmentTokenRecord:
    token_hash: str
    user_id: str
    ownership: Ownership
    platform: Platform | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    used_by_device: str | None = None


@dataclass(frozen=True, slots=True)
class RegisteredSerial:
    serial_number: str
    platform: Platform
    user_id: str | None
    registered_by: str
    registered_at: datetime
    device_id: str | None = None
    #: SHA-256 hex of the serial's enrollment secret; ``None``: none (cannot enroll by serial).
    secret_hash: str | None = None


class EnrollmentTokenStore(Protocol):
    def add_token(self, token: EnrollmentTokenRecord) -> None:
        """Store a new token. Raises :class:`mdm_core.domain.errors.Conflict` if the hash exists."""
        ...

    def get_token(self, token_hash: str) -> EnrollmentTokenRecord | None:
        """The token, or ``None`` if unknown. Does not consume it."""
        ...

    def redeem_token(
        self, token_hash: str, *, device_id: str, at: datetime
    ) -> EnrollmentTokenRecord | None:
        """Mark the token used by ``device_id`` if it is unused and ``expires_at > at``.

        Atomic: of concurrent calls at most one gets the record back; the others (and calls
        for unknown, used or expired tokens) get ``None``.
        """
        ...


class RegisteredSerialStore(Protocol):
    def register(self, serial: RegisteredSerial) -> None:
        """Register a serial for automated (corporate) enrollment. Registering it again
        replaces platform, user, registrar and secret hash, and keeps the bound device id."""
        ...

    def get(self, serial_number: str) -> RegisteredSerial | None:
        """The registration, or ``None`` if the serial was never registered."""
        ...

    def bind_device(self, serial_number: str, *, device_id: str, expected: str | None) -> bool:
        """Compare-and-set the device bound to a serial: sets ``device_id`` only if the bound
        id is still ``expected``. ``False`` if it moved or the serial is unknown."""
        ...
