"""The SSO session cookie: its own cookie (not Flask's signed session), holding only the id.

HttpOnly (no script reads it), ``SameSite=Lax`` (sent on the top-level navigation an
application's redirect to ``/oauth/authorize`` is, never on cross-site subrequests), ``Secure``
when the issuer is https, ``Path=/``, and a ``Max-Age`` of the session's absolute lifetime
(the server ends it earlier when idle or revoked; the cookie outliving it finds nothing).
"""

from __future__ import annotations

from datetime import timedelta

from flask import Request, Response

__all__ = ["read_session_cookie", "set_session_cookie", "clear_session_cookie"]


def read_session_cookie(request: Request, name: str) -> str | None:
    """The cookie's value, or None when absent or empty."""
    value = request.cookies.get(name)
    return value or None


def set_session_cookie(
    response: Response, name: str, value: str, *, secure: bool, lifetime: timedelta
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(lifetime.total_seconds()),
        path="/",
        secure=secure,
        httponly=True,
        samesite="Lax",
    )


def clear_session_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="Lax")
