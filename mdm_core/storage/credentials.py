"""Access credentials the access plane issued from a device or to a user: the revocation seam.

The MDM core decides when a device stops being trusted (quarantine, certificate revocation,
retirement, wipe) and when a user stops being allowed in (account disabled, offboarding). The
credentials that trust bought (OAuth access and refresh tokens, sessions) are issued and
stored by the gateway, which ``mdm_core`` must not import. So the core defines this small
protocol and the unit of work exposes it as ``uow.credentials``; the gateway implements it over
its own tables **on the unit of work's connection**, so the revocation commits or rolls back
together with the status change that caused it (an outbox consumer would not: it runs after
the commit, and a crash in between would leave a quarantined device holding live tokens).

With no implementation registered (an MDM-only process, the simulator) there is nothing to
revoke (:class:`AllCredentials` of none). Call it through
:mod:`mdm_core.domain.device_lifecycle`, never directly from services.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

__all__ = ["CredentialRevoker", "AllCredentials"]


class CredentialRevoker(Protocol):
    """Revokes, inside the caller's transaction, what the access plane issued."""

    def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> int:
        """Revoke every live credential obtained from ``device_id`` (any user); returns how
        many were newly revoked (0 for an unknown device or none live). Raises on a storage
        error, which rolls the whole unit of work back."""
        ...

    def revoke_for_user(self, user_id: str, *, reason: str, at: datetime) -> int:
        """Revoke every live credential of ``user_id`` (any device); returns how many were
        newly revoked (0 when none). Raises on a storage error (the unit of work rolls back)."""
        ...


class AllCredentials:
    """Every registered revoker, in order; the total count. The first error propagates."""

    def __init__(self, revokers: Sequence[CredentialRevoker]) -> None:
        self._revokers = tuple(revokers)

    def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> int:
        return sum(r.revoke_for_device(device_id, reason=reason, at=at) for r in self._revokers)

    def revoke_for_user(self, user_id: str, *, reason: str, at: datetime) -> int:
        return sum(r.revoke_for_user(user_id, reason=reason, at=at) for r in self._revokers)
