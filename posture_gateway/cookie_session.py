"""The browser session cookie: Flask's signed cookie session, without its per-request cost.

Flask opens the session of every request (its ``SecureCookieSessionInterface`` builds a new
itsdangerous serializer each time, and reads seven cookie settings when it saves), although
only the login pages use it: ~40 us of the ~170 us the app added to a trivial request.
:class:`CachedCookieSessionInterface` is the same interface with the same cookie, signature
and settings, and three shortcuts that change no answer:

- the serializer is built once per (secret key, fallback keys) and reused (it is stateless:
  every ``loads``/``dumps`` makes its own signer);
- a request without a ``Cookie`` header gets the new empty session at once (what the parent
  returns then, after building a serializer it does not use);
- saving a session that is empty, unmodified and was never read does nothing (the parent
  reads its settings first, then does nothing either). Any other session is saved by the
  parent, unchanged (``Vary: Cookie``, deletion, refresh).
"""

from __future__ import annotations

import threading

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer

__all__ = ["CachedCookieSessionInterface", "install"]


class CachedCookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session with a cached serializer and the empty-session shortcuts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[tuple[object, ...], URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        serializer = super().get_signing_serializer(app)
        with self._lock:
            self._cached = (key, serializer)
        return serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if "HTTP_COOKIE" not in request.environ and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)


def install(app: Flask) -> None:
    """Serve ``app``'s sessions through :class:`CachedCookieSessionInterface`."""
    app.session_interface = CachedCookieSessionInterface()
