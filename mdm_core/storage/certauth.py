"""Issued device certificates and their revocation (the CA's record of what it signed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["CertificateRecord", "CertificateStore", "StoredCaKey", "CaKeyStore"]


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    serial: str  # lowercase hex, no leading zeros
    device_id: str
    user_id: str
    key_thumbprint: str
    not_before: datetime
    not_after: datetime
    pem: str
    revoked_at: datetime | None = None
    revocation_reason: str | None = None


class CertificateStore(Protocol):
    def add(self, certificate: CertificateRecord) -> None:
        """Record an issued certificate. Raises :class:`mdm_core.domain.errors.Conflict` if the
        serial already exists (serials are random; a clash means a bug or an attack)."""
        ...

    def get(self, serial: str) -> CertificateRecord | None:
        """The certificate with ``serial``, or ``None`` if unknown."""
        ...

    def is_revoked(self, serial: str) -> bool:
        """``True`` if revoked **or unknown** (fail closed: we only trust what we issued)."""
        ...

    def revoke(self, serial: str, *, reason: str, at: datetime) -> bool:
        """Revoke one certificate. ``True`` if this call revoked it, ``False`` if it already
        was (the first reason and time are kept). Raises :class:`mdm_core.domain.errors.NotFound`
        for an unknown serial."""
        ...

    def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> list[str]:
        """Revoke every unrevoked certificate of ``device_id``; returns the serials this call
        revoked (``[]`` if none, including for an unknown device)."""
        ...


@dataclass(frozen=True, slots=True)
class StoredCaKey:
    """The CA's key pair at rest: PKCS#8 PEM encrypted with the configured passphrase."""

    id: str
    encrypted_key_pem: str
    certificate_pem: str
    created_at: datetime


class CaKeyStore(Protocol):
    def get_ca_key(self, key_id: str) -> StoredCaKey | None:
        """The stored CA key ``key_id``, or ``None`` if none was stored yet."""
        ...

    def add_ca_key(self, key: StoredCaKey) -> bool:
        """Store a CA key unless one with that id exists. ``True`` if stored, ``False`` if
        another process stored one first (the caller then loads that one)."""
        ...
