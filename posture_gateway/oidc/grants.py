"""Grant storage of the OpenID provider: authorization codes and issued tokens.

Protocols (:class:`CodeStore`, :class:`TokenStore`, :class:`TokenRevoker`) and their records.
The SQL implementation is :mod:`posture_gateway.oidc.sql_grants`. Codes and refresh tokens
are looked up by their SHA-256 digest (:func:`digest`); the plain values are never stored.
Every storage error propagates: callers fail closed (no code, no token, "inactive").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "GrantSubject",
    "CodeRecord",
    "TokenRecord",
    "CodeStore",
    "TokenStore",
    "TokenRevoker",
    "digest",
]


def digest(secret: str) -> str:
    """SHA-256 hex of a high-entropy secret (code, refresh token) for lookup at rest."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class GrantSubject:
    """Who logged in, how, and from which device: everything tokens are later built from."""

    user_id: str
    auth_time: int
    acr: str
    amr: tuple[str, ...]
    profile: Mapping[str, Any] = field(default_factory=dict)  # preferred_username, name, email
    posture: Mapping[str, Any] = field(default_factory=dict)  # posture claims for ID tokens
    device_id: str | None = None
    # A machine client (client credentials): no user, no device. Every other subject's tokens
    # are bound to ``device_id`` and die with it (posture_gateway.oidc.binding).
    machine: bool = False
    # The SSO session (its public id, the ``sid`` claim) the login ran in; None outside one.
    # Tokens issued from this subject are linked to it and end with it.
    sid: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_id": self.user_id,
            "auth_time": self.auth_time,
            "acr": self.acr,
            "amr": list(self.amr),
            "profile": dict(self.profile),
            "posture": dict(self.posture),
            "device_id": self.device_id,
        }
        if self.machine:
            data["machine"] = True
        if self.sid is not None:
            data["sid"] = self.sid
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GrantSubject:
        return cls(
            user_id=str(data["user_id"]),
            auth_time=int(data["auth_time"]),
            acr=str(data["acr"]),
            amr=tuple(str(a) for a in data["amr"]),
            profile=dict(data.get("profile") or {}),
            posture=dict(data.get("posture") or {}),
            device_id=data.get("device_id"),
            machine=data.get("machine") is True,
            sid=str(data["sid"]) if data.get("sid") else None,
        )


@dataclass(frozen=True)
class CodeRecord:
    """An authorization code as stored (by digest), bound to client, redirect URI and PKCE."""

    code_hash: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    subject: GrantSubject
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class TokenRecord:
    """One issuance: an access token (by jti) and optionally its refresh token (by digest)."""

    id: str
    client_id: str
    scope: str
    subject: GrantSubject
    family_id: str
    issued_at: datetime
    access_expires_at: datetime
    refresh_token_hash: str | None = None
    refresh_expires_at: datetime | None = None
    code_hash: str | None = None
    revoked_at: datetime | None = None

    def access_active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.access_expires_at

    def refresh_active(self, now: datetime) -> bool:
        return (
            self.revoked_at is None
            and self.refresh_token_hash is not None
            and self.refresh_expires_at is not None
            and now < self.refresh_expires_at
        )


class CodeStore(Protocol):
    """Authorization codes: saved once, consumed at most once."""

    def save(self, record: CodeRecord) -> None:
        """Store a new code. Raises if a code with the same digest exists (never overwrite)."""
        ...

    def consume(self, code_hash: str, *, now: datetime) -> CodeRecord | None:
        """Spend the code atomically and return it; of concurrent calls at most one succeeds.

        None for an unknown code, an expired code, or a code already spent. A code presented a
        second time also revokes every token issued from it (RFC 6749 section 4.1.2).
        """
        ...

    def nonce_seen(self, client_id: str, nonce: str) -> bool:
        """True when a code was already issued to ``client_id`` for this OIDC ``nonce``."""
        ...


class TokenStore(Protocol):
    """Issued tokens: lookup for userinfo/introspection, refresh rotation, revocation."""

    def save(self, record: TokenRecord) -> None:
        """Store a new issuance. Raises if the id or refresh digest exists."""
        ...

    def get(self, token_id: str) -> TokenRecord | None:
        """The issuance with this access-token jti, revoked or not; None when unknown."""
        ...

    def find_by_refresh(self, refresh_hash: str) -> TokenRecord | None:
        """The issuance holding this refresh token digest, revoked or not; None when unknown."""
        ...

    def claim_refresh(self, refresh_hash: str, *, now: datetime) -> TokenRecord | None:
        """Rotate: atomically revoke the live issuance holding this refresh token and return it.

        None for an unknown or expired refresh token. A refresh token that was already rotated
        or revoked is a replay: the whole family (every issuance from the same login) is
        revoked and None is returned. Of concurrent calls at most one gets the record.
        """
        ...

    def revoke(
        self, *, token_id: str | None = None, family_id: str | None = None, reason: str
    ) -> int:
        """Revoke one issuance or a whole family; returns how many were newly revoked (0 when
        unknown or already revoked). Exactly one of ``token_id``/``family_id`` is given."""
        ...


class TokenRevoker(Protocol):
    """Bulk revocation for continuous evaluation and offboarding."""

    def revoke_for_user(self, user_id: str, *, reason: str) -> int:
        """Revoke every live issuance of this user; returns how many (0 when none)."""
        ...

    def revoke_for_device(self, device_id: str, *, reason: str) -> int:
        """Revoke every live issuance obtained from this device; returns how many."""
        ...
