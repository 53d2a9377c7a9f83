"""How the gateway learns who the user is: :class:`Authenticator` and its result.

An authenticator is one way to log in (local password, an upstream OIDC provider, ...). The
login page lists the configured authenticators; picking one calls :meth:`Authenticator.begin`
with the login id, which returns the response that starts it (the password form, or a
redirect to the upstream provider). When the authenticator knows the user it calls
:func:`posture_gateway.oidc.login.complete_authentication` with the login id and an
:class:`AuthenticatedUser`, and the flow continues to the device check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flask.typing import ResponseReturnValue

__all__ = ["AuthenticatedUser", "Authenticator", "AuthenticationFailed"]


@dataclass(frozen=True)
class AuthenticatedUser:
    """A user an authenticator vouched for. ``user_id`` is the directory mirror id (``sub``)."""

    user_id: str
    username: str
    email: str | None = None
    name: str | None = None
    amr: tuple[str, ...] = ("pwd",)
    source: str = "local"

    def profile(self) -> dict[str, str]:
        """Profile claims for ID tokens and userinfo (filtered by scope later)."""
        claims = {"preferred_username": self.username}
        if self.name:
            claims["name"] = self.name
        if self.email:
            claims["email"] = self.email
        return claims


class AuthenticationFailed(Exception):
    """The user could not be authenticated; ``reason`` is machine-readable.

    Reasons: ``invalid_credentials`` (unknown user or wrong password, deliberately the same),
    ``rate_limited``, ``unavailable`` (a backend failed: fail closed).
    """

    def __init__(self, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after  # seconds, for ``rate_limited`` (the Retry-After header)


class Authenticator(Protocol):
    """One way to learn who the user is."""

    @property
    def name(self) -> str:
        """Stable id used in URLs (``local``, ``upstream-okta``)."""
        ...

    @property
    def label(self) -> str:
        """What the login page shows on the button."""
        ...

    def begin(self, login_id: str) -> ResponseReturnValue:
        """Start authenticating for the login transaction ``login_id`` (render or redirect)."""
        ...
