"""The SSO session record and the store protocol (protocol-neutral: OIDC and SAML logins).

A session is what a finished, allowed login leaves behind so that the next application's login
in the same browser does not ask for the password again. It is bound to the device the login
proved: a later login inside it must prove the SAME device again (fresh nonce, fresh proof,
the one access evaluator), and the session dies with that device's trust (quarantine, block,
revocation, retirement, wipe, re-enrollment) and with its user (disabled, offboarded), in the
same transaction as the event (:class:`posture_gateway.sso.sql.ConnectionSessionRevoker`).

The browser holds only an opaque random id in its own cookie; the store keeps its SHA-256
digest. ``public_id`` (the ``sid`` claim, the admin API's id) is a second random value, so
nothing that leaves the server in a token or a listing can be replayed as the cookie.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = ["Session", "SessionStore", "NewSession"]


@dataclass(frozen=True, slots=True)
class NewSession:
    """What a finished login knows about its user, for :meth:`SessionStore.create`."""

    user_id: str
    device_id: str
    auth_time: datetime  # when the credentials were verified
    acr: str
    amr: tuple[str, ...]
    # Who (username, email, name, authentication source): shown again without asking.
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Session:
    """One stored session (never its cookie value)."""

    public_id: str  # the ``sid`` claim
    user_id: str
    device_id: str
    auth_time: datetime
    acr: str
    amr: tuple[str, ...]
    data: Mapping[str, Any]
    created_at: datetime
    last_seen_at: datetime
    idle_expires_at: datetime
    absolute_expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    def live(self, now: datetime) -> bool:
        """Not revoked, and neither the idle nor the absolute expiry has passed."""
        return (
            self.revoked_at is None
            and now < self.idle_expires_at
            and now < self.absolute_expires_at
        )

    def to_json(self, now: datetime) -> dict[str, Any]:
        """The admin view (no secret: the cookie value is never stored)."""
        return {
            "id": self.public_id,
            "user_id": self.user_id,
            "device_id": self.device_id,
            "auth_time": self.auth_time.isoformat(),
            "acr": self.acr,
            "amr": list(self.amr),
            "created_at": self.created_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "idle_expires_at": self.idle_expires_at.isoformat(),
            "absolute_expires_at": self.absolute_expires_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_reason": self.revoked_reason,
            "live": self.live(now),
        }


class SessionStore(Protocol):
    """Sessions, shared by every gateway process (the gateway's database)."""

    def create(self, new: NewSession) -> tuple[str, Session]:
        """Store a new session; returns the cookie value (a fresh random id, never stored
        in clear) and the session. Raises on a storage error (the login then fails)."""
        ...

    def find_live(self, cookie: str) -> Session | None:
        """The live session behind a cookie value, its use recorded (``last_seen_at``; the
        idle expiry slides, never past the absolute one); ``None`` for an unknown, expired
        or revoked one, or a malformed value. Raises on a storage error (callers treat that
        as no session: credentials are asked again)."""
        ...

    def revoke(
        self,
        *,
        reason: str,
        public_id: str | None = None,
        user_id: str | None = None,
        device_id: str | None = None,
    ) -> int:
        """End the live sessions that match EXACTLY ONE selector (``ValueError`` otherwise);
        returns how many were live (0 for an unknown one). Also revokes the OIDC tokens
        issued in those sessions (same transaction)."""
        ...

    def list(self, *, user_id: str | None = None, device_id: str | None = None) -> list[Session]:
        """Sessions of a user or a device (exactly one selector), newest first, ended ones
        included (``Session.live`` says which are usable); ``[]`` when none."""
        ...
