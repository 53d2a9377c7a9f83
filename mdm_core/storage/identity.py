"""The one read the device-proof verifier makes per request: device + current certificate.

Kept apart from :mod:`mdm_core.storage.devices` because it is the hot path: one query joining
the device row with its current certificate's validity and revocation (on PostgreSQL, with
the proof's replay record inserted by the same statement).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mdm_core.domain.model import DeviceRecord

__all__ = ["DeviceIdentity", "DeviceIdentityStore"]


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """A device with the key and certificate facts a proof is checked against.

    ``public_key`` is the DER SubjectPublicKeyInfo (``None`` if the device has no key);
    ``cert_not_after`` / ``cert_revoked_at`` are ``None`` when the device row names no
    certificate that exists.
    """

    device: DeviceRecord
    public_key: bytes | None
    cert_not_after: datetime | None
    cert_revoked_at: datetime | None


class DeviceIdentityStore(Protocol):
    def lookup(self, device_id: str) -> DeviceIdentity | None:
        """The device and its current certificate in one query; ``None`` for an unknown id."""
        ...

    def lookup_and_remember(
        self, device_id: str, replay_key: str, expires_at: datetime
    ) -> tuple[DeviceIdentity | None, bool]:
        """:meth:`lookup` plus :meth:`mdm_core.storage.replay.ReplayStore.remember` of
        ``replay_key`` in the same transaction (one round trip where the database allows it).
        Returns the identity (``None`` for an unknown id: the key is written anyway, the
        caller refuses and rolls back) and whether the key was new (``False``: replayed)."""
        ...
