"""Broker mode at the gateway: an upstream OpenID provider as an ``Authenticator``.

:class:`UpstreamAuthenticator` adapts :class:`idp_connectors.oidc_upstream.OidcUpstream` to the
login flow's :class:`~posture_gateway.oidc.authn.Authenticator` protocol: ``begin(login_id)``
keeps the PKCE verifier, state and nonce in the signed session (keyed by ``state``) and
redirects to the upstream; ``/login/upstream/<name>/callback`` completes the code exchange,
verifies the ID token, maps the upstream identity to our directory user
(:class:`~idp_connectors.identity.UserDirectory`) and hands an
:class:`~posture_gateway.oidc.authn.AuthenticatedUser` to the login flow, which continues with
the device check. Any upstream failure ends on a clear error page and no token is issued.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, redirect, request, session
from flask.typing import ResponseReturnValue

from idp_connectors.errors import ConnectorError, LoginStateError, UserNotMapped
from idp_connectors.identity import DirectoryAccount, UserAccounts
from idp_connectors.oidc_upstream import OidcUpstream, PendingUpstreamLogin, UpstreamLogin
from posture_gateway.api.openapi import not_json
from posture_gateway.integrations.state import integrations
from posture_gateway.oidc.authn import AuthenticatedUser
from posture_gateway.oidc.web import render_page

__all__ = [
    "bp",
    "UpstreamAuthenticator",
    "authenticated_user",
    "upstream_authenticators",
]

log = logging.getLogger(__name__)

bp = Blueprint("upstream_login", __name__, template_folder="../pages/templates")

_SESSION_KEY = "upstream_logins"
_MAX_OPEN = 3


_MESSAGES = {
    "upstream.denied": "Your identity provider did not sign you in.",
    "upstream.unavailable": "Your identity provider could not be reached.",
    "upstream.protocol": "Your identity provider answered in a way we do not accept.",
    "upstream.state_mismatch": "This sign-in response does not belong to a sign-in we started.",
    "user.unknown": "Your account is not known to this gateway or is disabled.",
}


def _error_page(reason: str, status: int) -> Response:
    message = _MESSAGES.get(reason, "Your identity provider's answer could not be verified.")
    return render_page("login/upstream_error.html", status, message=message, reason=reason)


def authenticated_user(
    login: UpstreamLogin, user_id: str, upstream: str, account: DirectoryAccount | None = None
) -> AuthenticatedUser:
    """What the login flow needs to know about a user the upstream vouched for.

    With the directory's ``account`` the profile claims are OUR names for the user (an
    upstream linked to alice that asserts ``preferred_username: bob`` does not make our
    tokens say bob); without it, the upstream's (verified email only).
    """
    name = login.claims.get("name")
    if account is not None:
        return AuthenticatedUser(
            user_id=user_id,
            username=account.username,
            email=account.email,
            name=account.display_name or (name if isinstance(name, str) else None),
            amr=("fed",),
            source=f"upstream:{upstream}",
        )
    return AuthenticatedUser(
        user_id=user_id,
        username=login.identity.username or login.identity.email or user_id,
        email=login.identity.email if login.identity.email_verified else None,
        name=name if isinstance(name, str) else None,
        amr=("fed",),  # RFC 8176: federated authentication at the upstream
        source=f"upstream:{upstream}",
    )


class UpstreamAuthenticator:
    """One upstream OpenID provider offered on the login page."""

    def __init__(self, upstream: OidcUpstream, *, label: str | None = None) -> None:
        if upstream is None:
            raise ValueError("UpstreamAuthenticator needs an upstream")
        self.upstream = upstream
        self._label = label or f"Sign in with {upstream.name}"

    @property
    def name(self) -> str:
        return f"upstream-{self.upstream.name}"

    @property
    def label(self) -> str:
        return self._label

    def begin(self, login_id: str) -> ResponseReturnValue:
        try:
            url, pending = self.upstream.begin()
        except ConnectorError as exc:
            log.warning("upstream %s: cannot start login: %s", self.upstream.name, exc)
            return _error_page(exc.reason, 502)
        open_logins: dict[str, Any] = dict(session.get(_SESSION_KEY) or {})
        while len(open_logins) >= _MAX_OPEN:
            open_logins.pop(next(iter(open_logins)))
        open_logins[pending.state] = {"login_id": login_id, **pending.to_dict()}
        session[_SESSION_KEY] = open_logins
        return redirect(url, code=303)


def upstream_authenticators(
    upstreams: Mapping[str, OidcUpstream],
) -> dict[str, UpstreamAuthenticator]:
    """One authenticator per configured upstream, by authenticator name (``upstream-<name>``):
    what the login page offers besides the password form."""
    found = (UpstreamAuthenticator(up) for up in upstreams.values())
    return {a.name: a for a in found}


@bp.get("/login/upstream/<name>/callback")
@not_json("redirect / html error page")
def callback(name: str) -> ResponseReturnValue:
    st = integrations()
    upstream = st.upstreams.get(name)
    if upstream is None:
        return _error_page("upstream.unknown", 404)
    open_logins: dict[str, Any] = dict(session.get(_SESSION_KEY) or {})
    raw = open_logins.pop(request.args.get("state", ""), None)
    session[_SESSION_KEY] = open_logins  # single use, whatever happens next
    try:
        if not isinstance(raw, dict):
            raise LoginStateError("no login started with this state")
        login_id = str(raw.get("login_id", ""))
        pending = PendingUpstreamLogin.from_dict(raw)
        login = upstream.complete(pending, request.args.to_dict())
        user_id = st.user_directory.resolve(login.identity)
        if user_id is None:
            raise UserNotMapped(f"no directory user for {login.identity.issuer} subject")
        directory = st.user_directory
        account = directory.account(user_id) if isinstance(directory, UserAccounts) else None
    except ConnectorError as exc:
        log.warning("upstream %s: login refused: %s (%s)", name, exc.reason, exc)
        status = 502 if exc.reason in ("upstream.unavailable", "upstream.protocol") else 403
        return _error_page(exc.reason, status)
    except Exception:
        log.exception("upstream %s: login failed", name)
        return _error_page("upstream.error", 502)
    user = authenticated_user(login, user_id, name, account)
    return st.complete_authentication(user, login_id=login_id)
