"""Access credentials the access plane issued from a device or to a user: the revocation seam.

The MDM core decides when a device stops being trusted (quarantine, certificate revocation,
retirement, wipe) and when a user stops being allowed in (account disabled, offboarding). The
credentials that trust bought (OAuth access and refresh tokens, sessions) are issued and
stored by the gateway, which ``mdm_core`` must not import. So the core defines this small
protocol and the unit of work exposes it as ``uow.credentials``; the gateway implements it over
its own tables **on the unit of work's connection**, so the revocation commits or rolls back
together with the status change that caused it (an outbox consumer would not: it runs after
the commit, and a crash in between would leave a quarantined device holding live tokens).

Each revoker is registered with a *kind* (:data:`TOKENS`, :data:`SESSIONS`): the
``access.revoked`` event reports how many of the revoked credentials were SSO sessions.

With no implementation registered (an MDM-only process, the simulator) there is nothing to
revoke (:class:`AllCredentials` of none). Call it through
:mod:`mdm_core.domain.device_lifecycle`, never directly from services.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

__all__ = ["CredentialRevoker", "AllCredentials", "Revoked", "TOKENS", "SESSIONS"]

#: Kinds of credentials a revoker handles (the keys of :attr:`Revoked.by_kind`).
TOKENS = "tokens"
SESSIONS = "sessions"


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


@dataclass(frozen=True, slots=True)
class Revoked:
    """What one revocation ended: the total and the count per kind of credential."""

    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(self.by_kind.values())

    def of(self, kind: str) -> int:
        return self.by_kind.get(kind, 0)


class AllCredentials:
    """Every registered revoker, in order, with its kind; counts per kind.

    The first error propagates (the caller's unit of work rolls back)."""

    def __init__(self, revokers: Sequence[tuple[str, CredentialRevoker]]) -> None:
        self._revokers = tuple(revokers)

    def _each(self, call: Callable[[CredentialRevoker], int]) -> Revoked:
        by_kind: dict[str, int] = {}
        for kind, revoker in self._revokers:
            by_kind[kind] = by_kind.get(kind, 0) + call(revoker)
        return Revoked(by_kind)

    def device(self, device_id: str, *, reason: str, at: datetime) -> Revoked:
        """Revoke every live credential obtained from ``device_id``, counted per kind."""
        return self._each(lambda r: r.revoke_for_device(device_id, reason=reason, at=at))

    def user(self, user_id: str, *, reason: str, at: datetime) -> Revoked:
        """Revoke every live credential of ``user_id``, counted per kind."""
        return self._each(lambda r: r.revoke_for_user(user_id, reason=reason, at=at))

    def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> int:
        return self.device(device_id, reason=reason, at=at).count

    def revoke_for_user(self, user_id: str, *, reason: str, at: datetime) -> int:
        return self.user(user_id, reason=reason, at=at).count
