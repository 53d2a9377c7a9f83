"""The login flow pages: authorize -> who are you -> device check -> code (or remediation).

1. ``/oauth/authorize`` validates the whole request with authlib first (client, EXACT redirect
   URI, response type, scope, PKCE S256, nonce). An unknown client or a redirect URI that does
   not match is answered with an error page and NEVER a redirect; other errors go back to the
   (now trusted) redirect URI. A valid request starts a login transaction in the session.
2. ``/login`` asks who the user is: the local password form and/or other
   :class:`~posture_gateway.oidc.authn.Authenticator` s. Any authenticator finishes with
   :func:`complete_authentication`.
3. ``/login/device`` (GET) issues a single-use nonce and renders the device-check page, whose
   script asks the local agent for a login proof and posts it back. ``/login/device`` (POST)
   consumes the nonce (replays refused) and asks the access evaluator
   (:class:`mdm_core.access.evaluator.AccessEvaluator`, channel ``oidc``) through the
   device-check step every front end shares (:mod:`posture_gateway.login.device_step`):
   allow/restrict -> code; warn -> notice, then code; block -> remediation page with
   "check again" (the proven device is asked for a fresh check-in first,
   :mod:`posture_gateway.login.recheck`, then a fresh nonce). An evaluator that fails is a block.

**SSO session** (:mod:`posture_gateway.sso`, ``docs/sessions.md``). A login that ends with an
allowed decision (allow, warn, restrict) on a proven device creates a session (its own cookie)
unless it ran in one. An authorize inside a live session skips step 2 (no password) but never
step 3: a fresh nonce, a fresh proof and the one evaluator decide again, and the proof's device
must be the session's (another device: credentials are asked again). ``prompt=login`` or an
exceeded ``max_age`` asks for credentials whatever the session; ``prompt=none`` without a
usable session answers ``login_required`` to the client. Codes (and so tokens) issued in a
session carry its ``sid``.

The transaction lives server side (:mod:`posture_gateway.login.transactions`, shared by every
process, expiring); the signed session cookie (HttpOnly, SameSite=Lax, Secure on https) holds
only its unguessable id and the CSRF token every form carries. Authorize parameters are
bounded (count, length, no control characters) before anything is stored.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any
from urllib.parse import unquote, urlencode

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, abort, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from mdm_core.access.decision import Decision
from mdm_core.domain.infra_errors import InfraError
from posture_gateway.access.nonces import NonceKind, NonceStore, nonce_purpose
from posture_gateway.access.read_model import one_transaction
from posture_gateway.login.device_check import (
    acr_of,
    amr_of,
    decision_claims,
    granted_scopes,
)
from posture_gateway.login.device_step import (
    agent_config,
    agent_origin,
    begin_device_check,
    finish_device_check,
)
from posture_gateway.login.front_ends import LoginFrontEnd, UnknownFrontEnd, front_end_of
from posture_gateway.login.transactions import login_transactions
from posture_gateway.oidc.authn import AuthenticatedUser, AuthenticationFailed
from posture_gateway.oidc.grants import GrantSubject
from posture_gateway.oidc.server import (
    LoginSubject,
    OIDCProvider,
    StoredAuthorizeRequest,
    current_provider,
)
from posture_gateway.oidc.web import csrf_ok, origin_of, render_page, security_headers
from posture_gateway.pages.remediation import build_remediation
from posture_gateway.sso.cookie import read_session_cookie, set_session_cookie
from posture_gateway.sso.store import NewSession, Session

__all__ = ["bp", "complete_authentication", "session_user", "usable_session", "TX_KEY"]

bp = Blueprint("oidc_login", __name__, template_folder="../pages/templates")

TX_KEY = "oidc_login"
log = logging.getLogger(__name__)
_LOGIN_ERRORS = {
    "invalid_credentials": "The username or password is not right.",
    "rate_limited": "Too many failed attempts. Wait a few minutes and try again.",
    "unavailable": "Sign-in is unavailable right now. Try again in a moment.",
    "other_device": "This device is not the one you signed in on. Sign in again here.",
}


# ---- helpers ------------------------------------------------------------------------------


def _error_page(error: str, message: str, status: int = 400, *, retry: bool = False) -> Response:
    return render_page(
        "oidc/error.html",
        status,
        title="We cannot continue this sign-in",
        error=error,
        message=message,
        retry_url=url_for("oidc_login.device_page") if retry else None,
    )


def _oauth_error_response(provider: OIDCProvider, error: OAuth2Error) -> Response:
    """Redirect to the client only when authlib validated client and redirect URI."""
    if getattr(error, "redirect_uri", None):
        response: Response = provider.server.handle_error_response(None, error)
        return _with_iss(response, provider.issuer.issuer)
    return _error_page(error.error, error.description or error.error)


def _with_iss(response: Response, issuer: str) -> Response:
    """RFC 9207: every authorization response redirect names its issuer (mix-up defence)."""
    location = response.headers.get("Location")
    if response.status_code in (302, 303) and location:
        separator = "&" if "?" in location else "?"
        response.headers["Location"] = f"{location}{separator}{urlencode({'iss': issuer})}"
    return response


#: Where a request keeps the transaction it read (``(tx_id, tx)``): a second ``_tx()`` in the
#: same request (the password view, then complete_authentication) reads the store once.
_TX_MEMO = "posture_oidc_login_tx"


def _tx() -> dict[str, Any] | None:
    """The current login transaction, or None if absent or expired (the session cookie holds
    only its id; the transaction is in the shared store, read once per request: every write
    goes back to the store with :func:`_save`, which refuses a transaction that ended)."""
    tx_id = session.get(TX_KEY)
    if not isinstance(tx_id, str) or not tx_id:
        return None
    memo: tuple[str, dict[str, Any] | None] | None = g.get(_TX_MEMO)
    tx: dict[str, Any] | None
    if memo is not None and memo[0] == tx_id:
        tx = memo[1]
    else:
        tx = login_transactions().get(tx_id)
        setattr(g, _TX_MEMO, (tx_id, tx))
    provider = current_provider()
    if tx is None or time.time() - float(tx.get("created", 0)) > provider.login_ttl.total_seconds():
        session.pop(TX_KEY, None)
        g.pop(_TX_MEMO, None)
        return None
    return tx


def _save(tx: dict[str, Any]) -> None:
    """Write ``tx`` back to the store; a transaction that expired meanwhile ends the login."""
    tx_id = session.get(TX_KEY)
    if not isinstance(tx_id, str) or not login_transactions().put(tx_id, tx):
        session.pop(TX_KEY, None)
        g.pop(_TX_MEMO, None)
        abort(_no_login())
    setattr(g, _TX_MEMO, (tx_id, tx))


def _start(tx: dict[str, Any], ttl: timedelta) -> None:
    session[TX_KEY] = login_transactions().create(tx, ttl)


def _finish() -> bool:
    """End the current transaction (single use: of two concurrent finishes one wins)."""
    tx_id = session.pop(TX_KEY, None)
    g.pop(_TX_MEMO, None)
    return isinstance(tx_id, str) and login_transactions().take(tx_id) is not None


#: Longest accepted value per authorize parameter (characters); others get the default.
_PARAM_LIMITS = {
    "client_id": 256,
    "redirect_uri": 2048,
    "response_type": 64,
    "response_mode": 32,
    "scope": 1024,
    "state": 1024,
    "nonce": 512,
    "code_challenge": 128,
    "code_challenge_method": 16,
    "login_hint": 320,
    "prompt": 64,
    "max_age": 16,
    "acr_values": 1024,
    "ui_locales": 256,
    "claims_locales": 256,
    "display": 16,
    "id_token_hint": 8192,
}
_PARAM_DEFAULT_LIMIT = 256
_MAX_PARAMS = 32


def _bad_parameters(params: Mapping[str, str]) -> str | None:
    """Why ``params`` cannot start a login (too many, too long, control characters)."""
    if len(params) > _MAX_PARAMS:
        return f"At most {_MAX_PARAMS} parameters are accepted."
    for name, value in params.items():
        if len(name) > 64:
            return "A parameter name is too long."
        limit = _PARAM_LIMITS.get(name, _PARAM_DEFAULT_LIMIT)
        if len(value) > limit:
            return f"The parameter {name[:64]} is longer than {limit} characters."
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            return f"The parameter {name[:64]} contains control characters."
    return None


def _no_login() -> Response:
    return _error_page(
        "login_expired",
        "This sign-in has expired or was already used. Go back to the application and start again.",
    )


def _check_csrf() -> None:
    if not csrf_ok():
        abort(
            _error_page(
                "csrf",
                "This form expired or did not come from this site. Reload and try again.",
                403,
            )
        )


def _client_ip() -> str:
    return request.remote_addr or "unknown"


@bp.errorhandler(SQLAlchemyError)
@bp.errorhandler(InfraError)
def _store_down(_: Exception) -> Response:
    """Any storage failure in the login flow: nothing is issued, the user is told plainly."""
    return _error_page(
        "temporarily_unavailable", "Sign-in is unavailable right now. Try again.", 503
    )


# ---- 1. authorize ---------------------------------------------------------------------------


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize() -> ResponseReturnValue:
    provider = current_provider()
    values = request.values
    duplicated = sorted(k for k in values if len(values.getlist(k)) > 1)
    if duplicated:
        return _error_page("invalid_request", f"Repeated parameters: {', '.join(duplicated)}.")
    params = values.to_dict(flat=True)
    problem = _bad_parameters(params)
    if problem:
        return _error_page("invalid_request", problem)
    if params.get("request") or params.get("request_uri"):
        return _error_page("request_not_supported", "Request objects are not supported.")
    sso = usable_session(provider, params)
    try:
        # prompt=none is answered login_required by authlib unless a session is usable.
        grant = provider.server.get_consent_grant(request, end_user=sso)
    except OAuth2Error as error:
        return _oauth_error_response(provider, error)
    except ValueError:  # authlib's URL handling refuses what it cannot parse (a backslash ...)
        return _error_page("invalid_request", "The request has a malformed parameter.")
    client = grant.request.client
    _start(
        {
            "id": secrets.token_urlsafe(16),
            "created": time.time(),
            "params": params,
            "client_id": client.client_id,
            "client_name": client.config.name or client.client_id,
            "redirect_origin": origin_of(grant.redirect_uri),
            "user": session_user(sso) if sso is not None else None,
            # The session this login runs in: its device must be proven again.
            "sid": sso.public_id if sso is not None else None,
            "sso_device": sso.device_id if sso is not None else None,
            "device_nonce": None,
            "warn": None,
        },
        provider.login_ttl,
    )
    if sso is not None:
        log.info("login in SSO session user=%s client=%s", sso.user_id, client.client_id)
        return redirect(url_for("oidc_login.device_page"), 303)
    return redirect(url_for("oidc_login.login_page"), 303)


def usable_session(provider: OIDCProvider, params: Mapping[str, str]) -> Session | None:
    """The live SSO session this authorize may use instead of credentials, or None:
    sessions off, no cookie, unknown / expired / revoked, ``prompt=login``, or ``max_age``
    exceeded (or unreadable). A store error is no session (credentials are asked).
    Shared by every front end (the SAML IdP maps ``ForceAuthn`` to ``prompt=login``)."""
    if provider.sessions is None:
        return None
    cookie = read_session_cookie(request, provider.session_cookie)
    if cookie is None or "login" in params.get("prompt", "").split():
        return None
    try:
        found = provider.sessions.find_live(cookie)
    except Exception:
        log.exception("SSO session lookup failed: asking for credentials")
        return None
    if found is None:
        return None
    max_age = params.get("max_age")
    if max_age is not None:
        if not max_age.isdigit():
            return None
        age = datetime.now(UTC) - found.auth_time
        if age > timedelta(seconds=int(max_age)):
            return None
    return found


def session_user(found: Session) -> dict[str, Any]:
    """The login transaction's ``user`` for a login inside ``found`` (no credentials)."""
    data = found.data
    return {
        "user_id": found.user_id,
        "username": str(data.get("username") or found.user_id),
        "email": data.get("email"),
        "name": data.get("name"),
        # The credentials given at the session's login; the device amr is added per login.
        "amr": [str(a) for a in data.get("amr", [])],
        "source": data.get("source"),
        "auth_time": int(found.auth_time.timestamp()),
    }


# ---- 2. who are you -------------------------------------------------------------------------


def _login_page(tx: Mapping[str, Any], error: str | None = None, status: int = 200) -> Response:
    provider = current_provider()
    return render_page(
        "oidc/login.html",
        status,
        client_name=tx["client_name"],
        local_login=provider.local_users is not None,
        authenticators=list(provider.authenticators.values()),
        username=request.form.get("username", tx["params"].get("login_hint", "")),
        error=error,
        error_message=_LOGIN_ERRORS.get(error or "", ""),
    )


@bp.get("/login")
def login_page() -> ResponseReturnValue:
    tx = _tx()
    if tx is None:
        return _no_login()
    return _login_page(tx)


@bp.post("/login/password")
def password() -> ResponseReturnValue:
    tx = _tx()
    if tx is None:
        return _no_login()
    _check_csrf()
    provider = current_provider()
    if provider.local_users is None:
        return _error_page("local_login_disabled", "Password sign-in is not enabled here.", 404)
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    try:
        user = provider.local_users.verify(username, password, client_ip=_client_ip())
    except AuthenticationFailed as failed:
        status = 429 if failed.reason == "rate_limited" else 401
        if failed.reason == "unavailable":
            status = 503
        page = _login_page(tx, failed.reason, status)
        if failed.retry_after is not None:
            page.headers["Retry-After"] = str(failed.retry_after)
        return page
    return complete_authentication(user, login_id=str(tx["id"]))


@bp.get("/login/with/<name>")
def begin(name: str) -> ResponseReturnValue:
    tx = _tx()
    if tx is None:
        return _no_login()
    authenticator = current_provider().authenticators.get(name)
    if authenticator is None:
        return _error_page("unknown_authenticator", "This sign-in method does not exist.", 404)
    return authenticator.begin(str(tx["id"]))


def complete_authentication(user: AuthenticatedUser, *, login_id: str) -> Response:
    """Record who the user is in the current login and continue to the device check.

    Called by every authenticator when it has verified the user, inside the request that
    finished authentication (it carries the login session cookie). ``login_id`` is the id the
    authenticator got from ``begin`` (e.g. kept in the upstream ``state``); a mismatch with
    the session's login is refused (login CSRF).
    """
    tx = _tx()
    if tx is None or not hmac.compare_digest(str(tx.get("id", "")).encode(), login_id.encode()):
        return _no_login()
    tx["user"] = {
        "user_id": user.user_id,
        "username": user.username,
        "email": user.email,
        "name": user.name,
        "amr": list(user.amr),
        "source": user.source,
        "auth_time": int(time.time()),
    }
    tx["sid"] = None  # credentials given: this login makes its own session
    tx["sso_device"] = None
    tx["device_nonce"] = None
    tx["warn"] = None
    _save(tx)
    response: Response = redirect(url_for("oidc_login.device_page"), 303)  # type: ignore[assignment]
    return response


# ---- 3. device check ------------------------------------------------------------------------


@bp.get("/login/device")
def device_page() -> ResponseReturnValue:
    tx = _tx()
    if tx is None or not tx.get("user"):
        return _no_login()
    provider = current_provider()
    try:
        nonce = begin_device_check(
            provider.nonces,
            provider.device_nonce_ttl,
            kind=NonceKind.LOGIN_DEVICE,
            audience=provider.issuer.issuer,
        )
    except Exception:  # nonce store down: no nonce, no login
        return _error_page("unavailable", "The device check is unavailable right now.", 503)
    tx["device_nonce"] = nonce
    tx["warn"] = None
    _save(tx)
    return render_page(
        "oidc/device.html",
        nonce=nonce,
        config=agent_config(port=provider.agent_port, nonce=nonce, audience=provider.issuer.issuer),
        connect=[agent_origin(provider.agent_port)],
        form_targets=[tx["redirect_origin"]],
    )


def _forwarded_device_cert(provider: OIDCProvider) -> str | None:
    """The device certificate an mTLS proxy forwarded, if the TCP peer is a trusted proxy.

    The peer is the connection's address even behind ProxyFix (whose REMOTE_ADDR comes from
    headers a client controls). The gate verifies the certificate itself.
    """
    value = request.headers.get(provider.device_cert_header)
    if not value:
        return None
    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    peer = str(original.get("REMOTE_ADDR") or request.environ.get("REMOTE_ADDR") or "")
    try:
        peer_ip = ip_address(peer)
    except ValueError:
        peer_ip = None
    if peer_ip is None or not any(peer_ip in net for net in provider.device_cert_proxies):
        log.warning("device certificate header from untrusted address %s ignored", peer)
        return None
    pem = unquote(value)
    if "-----BEGIN CERTIFICATE-----" not in pem:
        log.warning("unreadable device certificate header from proxy %s ignored", peer)
        return None
    return pem


def _purpose(provider: OIDCProvider, kind: NonceKind) -> str:
    """Login nonces are bound to their step and to the OP issuer (the device proof's aud)."""
    return nonce_purpose(kind, audience=provider.issuer.issuer)


def _consume(nonces: NonceStore, nonce: str, purpose: str) -> bool:
    try:
        return nonces.consume(nonce, purpose=purpose)
    except Exception:  # store error: treat as not consumable (fail closed)
        return False


@bp.post("/login/device")
def device_submit() -> ResponseReturnValue:
    tx = _tx()
    if tx is None or not tx.get("user"):
        return _no_login()
    _check_csrf()
    provider = current_provider()
    expected = tx.get("device_nonce")
    tx["device_nonce"] = None
    _save(tx)
    user = tx["user"]
    requested = frozenset(str(tx["params"].get("scope", "")).split())
    front_end = _front_end(tx)
    checked = finish_device_check(
        provider.gate,
        provider.nonces,
        kind=NonceKind.LOGIN_DEVICE,
        channel=front_end.channel if front_end is not None else "oidc",
        audience=provider.issuer.issuer,
        expected_nonce=expected,
        presented_nonce=request.form.get("nonce", ""),
        user_id=user["user_id"],
        client_id=tx["client_id"],
        proof=request.form.get("proof") or None,
        client_cert_pem=_forwarded_device_cert(provider),
    )
    if checked.nonce_problem is not None:
        reason = checked.verdict.reasons[0]
        return _error_page(checked.nonce_problem, reason.message, 400, retry=True)
    verdict = checked.verdict
    sso_device = tx.get("sso_device")
    if sso_device is not None and verdict.device_id is not None and verdict.device_id != sso_device:
        # The session is bound to the device it was made on: another device starts over.
        log.warning(
            "login in SSO session user=%s proved device %s, not the session's %s: credentials",
            user["user_id"],
            verdict.device_id,
            sso_device,
        )
        if front_end is not None:  # a page would need the user (SAML IsPassive: NoPassive)
            refused = front_end.needs_credentials(tx)
            if refused is not None:
                _finish()
                return refused
        tx.update(user=None, sid=None, sso_device=None, device_nonce=None, warn=None)
        _save(tx)
        return _login_page(tx, "other_device", 401)
    log.info(
        "login device verdict user=%s client=%s outcome=%s reasons=%s",
        user["user_id"],
        tx["client_id"],
        verdict.outcome,
        ",".join(r.code for r in verdict.reasons),
    )
    if verdict.outcome == "block":  # whatever answers it (a page, a SAML IsPassive status)
        provider.blocked(verdict)  # stale posture ends the device's sessions and tokens
    if front_end is not None:  # another protocol may end the login here (SAML IsPassive)
        answer = front_end.decided(tx, verdict)
        if answer is not None:
            _finish()
            return answer
    if verdict.outcome == "block":
        fix = build_remediation(verdict.reasons, verdict.remediation)
        # "Check again" asks the proven device for a fresh check-in when the person can fix
        # something on it (posture_gateway.login.recheck).
        tx["recheck_device"] = verdict.device_id if fix.yours else None
        _save(tx)
        return render_page(
            "oidc/blocked.html",
            403,
            recheck=bool(tx["recheck_device"]),
            reasons=verdict.reasons,
            remediation=verdict.remediation,
            fix=fix,
            device=verdict.device,
        )
    if verdict.outcome == "warn":
        try:
            ticket = provider.nonces.issue(
                provider.login_ttl, purpose=_purpose(provider, NonceKind.LOGIN_WARN)
            )
        except Exception:
            return _error_page("unavailable", "Sign-in is unavailable right now.", 503)
        tx["warn"] = {"ticket": ticket, "verdict": verdict.to_json()}
        _save(tx)
        return render_page(
            "oidc/warn.html",
            reasons=verdict.reasons,
            remediation=verdict.remediation,
            fix=build_remediation(verdict.reasons, verdict.remediation),
            device=verdict.device,
            deadline=verdict.deadline.strftime("%Y-%m-%d %H:%M UTC") if verdict.deadline else None,
            ticket=ticket,
            form_targets=[tx["redirect_origin"]],
        )
    return _issue_code(provider, tx, verdict, requested)


@bp.post("/login/continue")
def continue_after_warning() -> ResponseReturnValue:
    tx = _tx()
    if tx is None or not tx.get("user") or not tx.get("warn"):
        return _no_login()
    _check_csrf()
    provider = current_provider()
    warn = tx["warn"]
    tx["warn"] = None
    _save(tx)
    ticket = request.form.get("ticket", "")
    if not hmac.compare_digest(ticket.encode(), str(warn["ticket"]).encode()) or not _consume(
        provider.nonces, ticket, _purpose(provider, NonceKind.LOGIN_WARN)
    ):
        return _error_page(
            "nonce_replayed", "This notice was already used. Check again.", 400, retry=True
        )
    requested = frozenset(str(tx["params"].get("scope", "")).split())
    return _issue_code(provider, tx, Decision.from_json(warn["verdict"]), requested)


# ---- issuing the code -----------------------------------------------------------------------


def _front_end(tx: Mapping[str, Any]) -> LoginFrontEnd | None:
    """The front end ``tx`` answers in (``None``: OIDC); one this app lacks ends the login."""
    try:
        return front_end_of(tx)
    except UnknownFrontEnd:
        _finish()
        abort(_no_login())


def _issue_code(
    provider: OIDCProvider,
    tx: Mapping[str, Any],
    verdict: Decision,
    requested: frozenset[str],
) -> Response:
    front_end = _front_end(tx)
    user = tx["user"]
    amr = tuple(dict.fromkeys([*user["amr"], *amr_of(verdict)]))
    device_id = verdict.device_id
    subject = GrantSubject(
        user_id=user["user_id"],
        auth_time=int(user["auth_time"]),
        acr=acr_of(verdict),
        amr=amr,
        profile={
            k: v
            for k, v in (
                ("preferred_username", user["username"]),
                ("email", user.get("email")),
                ("name", user.get("name")),
            )
            if v
        },
        posture={**decision_claims(verdict), "posture_outcome": verdict.outcome},
        device_id=str(device_id) if device_id is not None else None,
    )
    if not _finish():
        return _no_login()  # finished concurrently (a double submit) or expired
    try:
        sid, cookie = _login_session(provider, tx, subject)
    except Exception:  # storage failed: nothing is issued (fail closed)
        log.exception("creating the SSO session failed")
        return _error_page("unavailable", "Sign-in is unavailable right now. Try again.", 503)
    if front_end is not None:  # the same login, answered in another protocol (SAML)
        answer: Response = front_end.issue({**tx, "sid": sid}, verdict)
        return _with_session_cookie(provider, answer, cookie)
    oauth_request = StoredAuthorizeRequest(
        f"{provider.issuer.issuer}/oauth/authorize", tx["params"]
    )
    try:
        subject = replace(subject, sid=sid)
        grant_user = LoginSubject(
            subject=subject, granted_scopes=granted_scopes(verdict, requested)
        )
        response = _authorization_response(provider, oauth_request, grant_user)
    except OAuth2Error as error:
        return _oauth_error_response(provider, error)
    except Exception:  # storage failed: no code (fail closed), tell the user plainly
        log.exception("issuing the authorization code failed")
        return _error_page("unavailable", "Sign-in is unavailable right now. Try again.", 503)
    response = _with_session_cookie(provider, response, cookie)
    return security_headers(_with_iss(response, provider.issuer.issuer))


def _login_session(
    provider: OIDCProvider, tx: Mapping[str, Any], subject: GrantSubject
) -> tuple[str | None, str | None]:
    """The session this admitted login runs in, ``(sid, new cookie or None)``: the one it
    ran in, else a new one bound to the proven device (whatever the front end, unless the
    front end's transaction says ``"creates_session": False``). Raises on a storage error."""
    sid = tx.get("sid")
    if sid is not None or provider.sessions is None or subject.device_id is None:
        return sid, None
    if not tx.get("creates_session", True):
        return None, None
    user = tx["user"]
    cookie, created = provider.sessions.create(
        NewSession(
            user_id=subject.user_id,
            device_id=subject.device_id,
            auth_time=datetime.fromtimestamp(subject.auth_time, UTC),
            acr=subject.acr,
            amr=subject.amr,
            data={
                **subject.profile,
                "username": user["username"],
                "amr": list(user["amr"]),
                "source": user.get("source"),
            },
        )
    )
    return created.public_id, cookie


def _with_session_cookie(
    provider: OIDCProvider, response: Response, cookie: str | None
) -> Response:
    if cookie is not None:
        set_session_cookie(
            response,
            provider.session_cookie,
            cookie,
            secure=provider.secure_cookies,
            lifetime=provider.session_lifetime,
        )
    return response


@one_transaction
def _authorization_response(
    provider: OIDCProvider, oauth_request: StoredAuthorizeRequest, grant_user: LoginSubject
) -> Response:
    """Validate the stored authorization request ONCE more (client, exact redirect URI,
    response type, scope, PKCE S256, nonce not yet used, prompt) and issue the code.

    What authlib's ``get_consent_grant`` + ``create_authorization_response`` do, with one
    validation instead of two (each asks the code store whether the nonce was used): an
    invalid request raises :class:`OAuth2Error` (state attached) and issues nothing. On
    PostgreSQL the nonce lookup and the stored code share one transaction.
    """
    server = provider.server
    oauth_request.user = grant_user
    try:
        grant = server.get_authorization_grant(oauth_request)
        grant.validate_no_multiple_request_parameter(oauth_request)
        grant.validate_consent_request()  # hooked: PKCE, nonce, prompt
        args = grant.create_authorization_response(grant.redirect_uri, grant_user)
    except OAuth2Error as error:
        error.state = oauth_request.payload.state
        raise
    response: Response = server.handle_response(*args)
    grant.execute_hook("after_authorization_response", response)
    return response
