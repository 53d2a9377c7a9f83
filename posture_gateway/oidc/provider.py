"""The OpenID provider's protocol endpoints (everything but the interactive login pages).

- ``GET /.well-known/openid-configuration`` — discovery (OpenID Connect Discovery 1.0)
- ``GET /jwks.json`` — the published signing keys (RFC 7517), with ``x5c``
- ``POST /oauth/token`` — code (+PKCE) and refresh_token grants (RFC 6749, RFC 7636)
- ``GET|POST /oauth/userinfo`` — claims for a bearer access token (OIDC Core 5.3)
- ``POST /oauth/introspect`` — RFC 7662, client authentication required
- ``POST /oauth/revoke`` — RFC 7009
- ``GET|POST /oauth/end_session`` — RP-initiated logout 1.0: ends the browser's SSO session
  (and the tokens issued in it) and clears its cookie; ``post_logout_redirect_uri`` must be
  registered for the client EXACTLY, else no redirect happens (no open redirect).

A storage failure answers ``503 {"error": "temporarily_unavailable"}``: nothing is issued. The
token endpoint runs in one database transaction on PostgreSQL (``one_transaction``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, redirect, request, session
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from mdm_core.domain.infra_errors import InfraError
from posture_gateway.access.backends import require_shared_backends
from posture_gateway.access.read_model import one_transaction
from posture_gateway.oidc.claims import SUPPORTED_SCOPES, claims_supported, token_claims
from posture_gateway.oidc.login import TX_KEY
from posture_gateway.oidc.server import current_provider
from posture_gateway.oidc.tokens import TokenRejected
from posture_gateway.oidc.web import render_page
from posture_gateway.sso.cookie import clear_session_cookie, read_session_cookie
from posture_gateway.state import state

__all__ = ["bp", "discovery_document"]

log = logging.getLogger(__name__)

bp = Blueprint("oidc", __name__, template_folder="../pages/templates")

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _fail_closed(view: F) -> F:
    """Storage and shared-backend (Redis) errors become 503 temporarily_unavailable; nothing
    was issued."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        try:
            return view(*args, **kwargs)
        except (SQLAlchemyError, InfraError):
            response = jsonify(
                error="temporarily_unavailable", reason="the grant store is unavailable"
            )
            response.status_code = 503
            return _no_store(response)

    return wrapper  # type: ignore[return-value]


def discovery_document() -> dict[str, Any]:
    """The OpenID Provider metadata of the current app."""
    provider = current_provider()
    iss = provider.issuer.issuer
    return {
        "issuer": iss,
        "authorization_endpoint": f"{iss}/oauth/authorize",
        "token_endpoint": f"{iss}/oauth/token",
        "userinfo_endpoint": f"{iss}/oauth/userinfo",
        "jwks_uri": f"{iss}/jwks.json",
        "introspection_endpoint": f"{iss}/oauth/introspect",
        "revocation_endpoint": f"{iss}/oauth/revoke",
        "end_session_endpoint": f"{iss}/oauth/end_session",
        "scopes_supported": list(SUPPORTED_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(provider.keys.supported_algs()),
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims_supported(),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "prompt_values_supported": ["none", "login"],
        "authorization_response_iss_parameter_supported": True,
    }


@bp.get("/.well-known/openid-configuration")
def discovery() -> ResponseReturnValue:
    response = jsonify(discovery_document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/jwks.json")
def jwks() -> ResponseReturnValue:
    response = jsonify(current_provider().keys.jwks())
    # Short cache: a rotated-in key must reach verifiers well within the overlap.
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.post("/oauth/token")
@_fail_closed
@one_transaction
def token() -> ResponseReturnValue:
    """One database transaction on PostgreSQL for the whole exchange (spend the code, check
    the device and user, record the issuance): one BEGIN/COMMIT instead of four. An error
    rolls it all back: no token is issued and the code is not spent; a refused exchange
    (replay, unbound device, bad verifier) is an answer, not an error, and commits what it
    did (the spent code, the revocation of a replay). Nothing is issued while Redis (when
    configured) does not answer (:func:`require_shared_backends`)."""
    require_shared_backends(state().core)
    response: Response = current_provider().server.create_token_response()
    return _no_store(response)


def _bearer_error(error: str, description: str, status: int = 401) -> Response:
    response = jsonify(error=error, reason=description)
    response.status_code = status
    response.headers["WWW-Authenticate"] = (
        f'Bearer error="{error}", error_description="{description}"'
    )
    return _no_store(response)


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@_fail_closed
def userinfo() -> ResponseReturnValue:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        response = _bearer_error("invalid_request", "a Bearer access token is required")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    try:
        issued = current_provider().bearer_token(value.strip())
    except TokenRejected as rejected:
        return _bearer_error("invalid_token", rejected.reason)
    if "openid" not in issued.record.scope.split():
        return _bearer_error("insufficient_scope", "the token lacks the openid scope", 403)
    subject = issued.record.subject
    released = token_claims(
        issued.record.scope,
        user_id=subject.user_id,
        profile=subject.profile,
        groups=current_provider().groups_of,
    )
    claims = {"sub": subject.user_id, **released}
    return _no_store(jsonify(claims))


@bp.post("/oauth/introspect")
@_fail_closed
def introspect() -> ResponseReturnValue:
    response: Response = current_provider().server.create_endpoint_response("introspection")
    return _no_store(response)


@bp.post("/oauth/revoke")
@_fail_closed
def revoke() -> ResponseReturnValue:
    response: Response = current_provider().server.create_endpoint_response("revocation")
    return _no_store(response)


def _end_session_error(error: str, message: str) -> Response:
    return render_page(
        "oidc/error.html", 400, title="Sign-out request refused", error=error, message=message
    )


@bp.route("/oauth/end_session", methods=["GET", "POST"])
@_fail_closed
def end_session() -> ResponseReturnValue:
    provider = current_provider()
    values = request.values
    hint = values.get("id_token_hint")
    client_id = values.get("client_id")
    target = values.get("post_logout_redirect_uri")
    state = values.get("state")
    if hint:
        try:
            aud = provider.issuer.verify_id_token_audience(hint)
        except TokenRejected as rejected:
            return _end_session_error(
                "invalid_id_token_hint", f"The id_token_hint is not valid ({rejected.reason})."
            )
        if client_id and client_id != aud:
            return _end_session_error(
                "invalid_request", "client_id does not match the id_token_hint."
            )
        client_id = aud
    session.pop(TX_KEY, None)
    _end_sso_session()  # raises on a storage error: 503, the user is told to retry
    response = _after_logout(client_id, target, state)
    clear_session_cookie(response, provider.session_cookie, secure=provider.secure_cookies)
    return response


def _after_logout(client_id: str | None, target: str | None, state: str | None) -> Response:
    """The signed-out page, or the redirect to a post_logout_redirect_uri registered EXACTLY
    for the client (anything else: an error page, never a redirect)."""
    if not target:
        page: Response = render_page("oidc/signed_out.html")
        return page
    client = current_provider().clients.get(client_id)
    if client is None:
        return _end_session_error(
            "invalid_request",
            "A post_logout_redirect_uri needs a known client (client_id or id_token_hint).",
        )
    if not client.check_post_logout_redirect_uri(target):
        return _end_session_error(
            "invalid_request", "The post_logout_redirect_uri is not registered for this client."
        )
    location = (
        target + ("&" if "?" in target else "?") + urlencode({"state": state}) if state else target
    )
    response: Response = redirect(location, 303)  # type: ignore[assignment]
    return response


def _end_sso_session() -> None:
    """Revoke this browser's SSO session (and the tokens issued in it), if it has one."""
    provider = current_provider()
    cookie = read_session_cookie(request, provider.session_cookie)
    if provider.sessions is None or cookie is None:
        return
    found = provider.sessions.find_live(cookie)
    if found is not None:
        provider.sessions.revoke(reason="logout", public_id=found.public_id)
        log.info("SSO session ended by logout user=%s device=%s", found.user_id, found.device_id)
