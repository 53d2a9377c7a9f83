"""SAML Web Browser SSO on the gateway's ONE login: a validated AuthnRequest becomes a login
transaction, the OIDC login pages identify the user and check the device, and this module
answers the service provider.

:func:`start_login` takes a request the views already validated (:class:`SamlLoginRequest`:
the SP, the EXACT metadata ACS URL, the request ID, RelayState, ``IsPassive``, ``ForceAuthn``,
the Subject) and starts a login transaction in the shared store
(:mod:`posture_gateway.login.transactions`) marked ``front_end: "saml"``
(:mod:`posture_gateway.login.front_ends`), under the session key the login pages read:

- an SP with ``okta_factor: true`` (its requests are signed, the views checked that): the user
  is the Subject NameID, resolved to one of our directory users by the SP's ``linking`` rule;
  the browser goes straight to the device check, no password is asked. Unknown user: an
  ``AuthnFailed`` error Response. Such a login neither uses nor creates an SSO session (its
  first factor was Okta's, not ours);
- otherwise the browser goes to :func:`resume_login` (``GET /saml/sso/continue``: the SP's
  POST is cross-site and carries no ``SameSite=Lax`` SSO cookie, that GET does), which looks
  for the SSO session;
- inside a live SSO session (:mod:`posture_gateway.sso`, the same look-up as an
  OIDC authorize: :func:`posture_gateway.oidc.login.usable_session`): no password, but the
  device check always runs again (fresh nonce, fresh proof, the one evaluator, channel
  ``saml``) and the proof must name the session's device (another device: credentials again,
  or ``NoPassive`` for ``IsPassive``). ``ForceAuthn`` is ``prompt=login``: no session is
  used, the password is asked and the login makes a new session (a new ``AuthnInstant``);
- otherwise ``IsPassive`` (no session, or ``ForceAuthn`` with it): we cannot know the user
  without a page, so the answer is a ``NoPassive`` error Response at once;
- otherwise the login page (``/login``: local password, broker upstream OIDC or SAML IdPs),
  then the device check — the same pages, authenticators and device step as OIDC
  (``oidc/login.py``, ``login/device_step.py``, channel ``saml``, application = the SP's
  entity id). An admitted login creates the SSO session exactly as an OIDC login does.

``IsPassive`` inside a session still runs the device page: it needs no user (its script asks
the local agent and submits by itself, with no proof when no agent answers); every outcome
that would show a page is answered to the SP instead (block, no proof, another device: an
error Response; warn: the assertion without its notice).

:class:`SamlFrontEnd` is what the login pages hand the decision to: allow / warn (after the
notice) / restrict -> a signed Response with the posture attributes, POSTed to the ACS URL by
an auto-submitting form (``templates/saml/post.html``, the only form target its CSP allows);
block -> the shared remediation page and NO assertion; with ``IsPassive`` a block is an
``AuthnFailed`` error Response and a warn is answered without its notice (no page may show).
Every answer goes to the ACS URL the transaction holds, which came from the SP's metadata.
The assertion's ``SessionIndex`` is the SSO session's public id (``sid``, never the cookie
value); a fresh random id when sessions are off.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Response, redirect, session, url_for

from idp_connectors.identity import ExternalIdentity, UserAccounts
from mdm_core.access.decision import Decision
from mdm_core.access.request import Channel
from posture_gateway.login.front_ends import FRONT_END_KEY
from posture_gateway.login.transactions import login_transactions
from posture_gateway.oidc.login import TX_KEY, session_user, usable_session
from posture_gateway.oidc.server import current_provider
from posture_gateway.oidc.web import origin_of, render_page
from posture_gateway.saml.idp import SamlIdp, current_idp
from posture_gateway.saml.protocol.constants import (
    AC_PASSWORD_PROTECTED_TRANSPORT,
    AC_UNSPECIFIED,
    NAMEID_EMAIL,
    NAMEID_UNSPECIFIED,
)
from posture_gateway.saml.protocol.errors import SamlError
from posture_gateway.saml.protocol.response import (
    AttributeValue,
    IssuedResponse,
    SamlStatus,
    build_error_response,
    build_response,
)
from posture_gateway.saml.protocol.service_providers import ServiceProvider
from posture_gateway.saml.protocol.values import new_id

__all__ = [
    "FRONT_END",
    "NameId",
    "SamlFrontEnd",
    "SamlLoginRequest",
    "answer_page",
    "error_answer",
    "error_page",
    "resume_login",
    "start_login",
]

log = logging.getLogger(__name__)

#: The name SAML login transactions carry in ``tx["front_end"]``.
FRONT_END = "saml"


@dataclass(frozen=True)
class NameId:
    """A ``saml:NameID``: its value and Format (None: unspecified)."""

    value: str
    format: str | None = None


@dataclass(frozen=True)
class SamlLoginRequest:
    """A login the SSO views accepted: everything here is already validated.

    ``acs_url`` is an ACS endpoint of ``sp``'s metadata; ``request_id`` is the AuthnRequest's
    (None for an IdP-initiated login); ``subject`` is the signed request's Subject NameID
    (Okta factor mode).
    """

    sp: ServiceProvider
    acs_url: str
    request_id: str | None
    relay_state: str | None
    passive: bool = False
    force_authn: bool = False
    subject: NameId | None = None


# ---- pages ------------------------------------------------------------------------------------


def error_page(error: str, message: str, status: int = 400) -> Response:
    """A refusal shown to the user, never sent to an SP (the request is not trusted yet)."""
    return render_page(
        "oidc/error.html",
        status,
        title="We cannot continue this sign-in",
        error=error,
        message=message,
        retry_url=None,
    )


def answer_page(
    issued: IssuedResponse, relay_state: str | None, *, title: str, message: str, kind: str
) -> Response:
    """The HTTP-POST binding: an auto-submitting form to ``issued.destination`` (an ACS URL
    from the SP's metadata), the only form target this page's CSP allows."""
    return render_page(
        "saml/post.html",
        form_targets=[origin_of(issued.destination)],
        action=issued.destination,
        saml_response=base64.b64encode(issued.xml).decode("ascii"),
        relay_state=relay_state,
        title=title,
        message=message,
        kind=kind,
    )


def error_answer(
    idp: SamlIdp,
    *,
    sp_entity_id: str,
    acs_url: str,
    request_id: str | None,
    relay_state: str | None,
    status: SamlStatus,
    reason: str,
) -> Response:
    """A signed error Response (no assertion) to the SP's ACS URL; ``reason`` is a code."""
    try:
        issued = build_error_response(
            idp_entity_id=idp.entity_id,
            destination=acs_url,
            in_response_to=request_id,
            status=status,
            now=datetime.now(UTC),
            signer=idp.signer,
            status_message=reason,
        )
    except Exception:
        log.exception("saml: could not sign an error Response for %s", sp_entity_id)
        return error_page("unavailable", "Sign-in is unavailable right now. Try again.", 503)
    log.info(
        "saml answer sp=%s status=%s reason=%s response=%s",
        sp_entity_id,
        status.name,
        reason,
        issued.response_id,
    )
    return answer_page(
        issued,
        relay_state,
        title="Returning to the application",
        message="The sign-in did not complete; the application is told why.",
        kind=status.name.lower(),
    )


def _error_answer_for(tx: Mapping[str, Any], status: SamlStatus, reason: str) -> Response:
    saml = tx["saml"]
    return error_answer(
        current_idp(),
        sp_entity_id=saml["sp"],
        acs_url=saml["acs"],
        request_id=saml["request_id"],
        relay_state=saml["relay_state"],
        status=status,
        reason=reason,
    )


# ---- 1. the request becomes a login ------------------------------------------------------------


def _user_of_subject(idp: SamlIdp, sp: ServiceProvider, subject: NameId) -> dict[str, Any] | None:
    """The directory user an Okta factor-only Subject names (the SP's linking rule), or None.
    Raises when the directory is unreachable."""
    value = subject.value
    identity = ExternalIdentity(
        issuer=sp.entity_id,
        subject=value,
        username=value,
        email=value if "@" in value else None,
    )
    user_id = idp.directory.resolve(identity)
    if user_id is None:
        return None
    account = idp.directory.account(user_id) if isinstance(idp.directory, UserAccounts) else None
    return {
        "user_id": user_id,
        "username": account.username if account else value,
        "email": account.email if account else None,
        "name": account.display_name if account else None,
        "amr": ["fed"],  # the first factor was Okta's
        "source": "saml-factor",
        "auth_time": int(time.time()),
    }


def start_login(idp: SamlIdp, req: SamlLoginRequest) -> Response:
    """Start the login for an accepted request (see the module docstring)."""
    sp = req.sp

    def refuse(status: SamlStatus, reason: str) -> Response:
        return error_answer(
            idp,
            sp_entity_id=sp.entity_id,
            acs_url=req.acs_url,
            request_id=req.request_id,
            relay_state=req.relay_state,
            status=status,
            reason=reason,
        )

    user: dict[str, Any] | None = None
    if sp.config.okta_factor:
        if req.subject is None or not req.subject.value:
            return refuse(SamlStatus.AUTHN_FAILED, "subject_required")
        try:
            user = _user_of_subject(idp, sp, req.subject)
        except Exception:
            log.exception("saml: the directory failed resolving a factor-only subject")
            return error_page("unavailable", "Sign-in is unavailable right now. Try again.", 503)
        if user is None:
            log.info("saml factor-only: subject of %s is not one of our users", sp.entity_id)
            return refuse(SamlStatus.AUTHN_FAILED, "user_unknown")
    params: dict[str, str] = {}
    if req.subject is not None and not sp.config.okta_factor:
        params["login_hint"] = req.subject.value[:320]
    if req.force_authn:
        params["prompt"] = "login"  # credentials asked again, whatever session exists
    elif req.passive:
        params["prompt"] = "none"
    factor = sp.config.okta_factor
    tx = {
        "id": secrets.token_urlsafe(16),
        "created": time.time(),
        FRONT_END_KEY: FRONT_END,
        "params": params,
        "client_id": sp.entity_id,
        "client_name": idp.name_of(sp),
        "redirect_origin": origin_of(req.acs_url),
        "user": user,
        # The SSO session is looked up by resume_login (a same-site GET, see its docstring).
        "session_pending": user is None,
        "sid": None,
        "sso_device": None,
        "creates_session": not factor,
        "device_nonce": None,
        "warn": None,
        "saml": {
            "sp": sp.entity_id,
            "acs": req.acs_url,
            "request_id": req.request_id,
            "relay_state": req.relay_state,
            "passive": req.passive,
            "force_authn": req.force_authn,
            "name_id": req.subject.value if (factor and req.subject) else None,
            "name_id_format": req.subject.format if (factor and req.subject) else None,
        },
    }
    try:
        session[TX_KEY] = login_transactions().create(tx, idp.login_ttl)
    except Exception:
        log.exception("saml: the login transaction store failed")
        return error_page("unavailable", "Sign-in is unavailable right now. Try again.", 503)
    target = "oidc_login.device_page" if user is not None else RESUME_ENDPOINT
    response: Response = redirect(url_for(target), 303)  # type: ignore[assignment]
    return response


#: The endpoint of :func:`resume_login` (``GET /saml/sso/continue``, :mod:`.views`).
RESUME_ENDPOINT = "saml.resume"


def _login_expired() -> Response:
    return error_page(
        "login_expired",
        "This sign-in has expired or was already used. Go back to the application and start again.",
    )


def resume_login() -> Response:
    """Step 2 of a SAML login that is not factor-only: is there a usable SSO session?

    It runs on the GET the SSO endpoint redirects to, not in the SP's request: an
    HTTP-POST binding request is a cross-site POST, on which the browser withholds the
    ``SameSite=Lax`` SSO cookie; the redirect that follows is a top-level GET navigation,
    which carries it (for either binding, the same code path). A live session (not for
    ``ForceAuthn``): the device check, no password; none: the login page, or ``NoPassive``
    for ``IsPassive``.
    """
    tx_id = session.get(TX_KEY)
    store = login_transactions()
    tx = store.get(tx_id) if isinstance(tx_id, str) and tx_id else None
    if tx is None or tx.get(FRONT_END_KEY) != FRONT_END or not tx.get("session_pending"):
        return _login_expired()
    saml = tx["saml"]
    sso = None
    if not saml["force_authn"]:
        sso = usable_session(current_provider(), tx["params"])
    if sso is None and saml["passive"]:
        # No usable session: the user cannot be identified without showing a page.
        if store.take(str(tx_id)) is None:
            return _login_expired()
        session.pop(TX_KEY, None)
        return _error_answer_for(tx, SamlStatus.NO_PASSIVE, "interaction_required")
    tx.update(
        session_pending=False,
        user=session_user(sso) if sso is not None else None,
        # The session this login runs in: its device must be proven again (login pages).
        sid=sso.public_id if sso is not None else None,
        sso_device=sso.device_id if sso is not None else None,
    )
    if not store.put(str(tx_id), tx):
        session.pop(TX_KEY, None)
        return _login_expired()
    if sso is not None:
        log.info("saml login in SSO session user=%s sp=%s", sso.user_id, saml["sp"])
    target = "oidc_login.device_page" if sso is not None else "oidc_login.login_page"
    response: Response = redirect(url_for(target), 303)  # type: ignore[assignment]
    return response


# ---- 2. the decision becomes an answer ---------------------------------------------------------


def _name_id(sp: ServiceProvider, tx: Mapping[str, Any]) -> NameId | None:
    """The NameID of our assertion: the request's (factor-only), else the user's attribute
    the SP's config names (``nameid_attribute``: email, username or user_id)."""
    saml, user = tx["saml"], tx["user"]
    if saml.get("name_id"):
        return NameId(str(saml["name_id"]), saml.get("name_id_format") or NAMEID_UNSPECIFIED)
    value = user.get(sp.config.nameid_attribute)  # the login's user: user_id, username, email
    if not value:
        return None
    fmt = sp.config.nameid_format
    if fmt == NAMEID_EMAIL and "@" not in str(value):
        return None
    return NameId(str(value), fmt)


def _attributes(verdict: Decision, user: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """The posture attributes of the verdict (the ID token's posture claims) and the user's."""
    attributes: dict[str, AttributeValue] = {
        "posture_outcome": verdict.outcome,
        "device_compliant": verdict.outcome == "allow",
        "posture_evaluated_at": int(verdict.evaluated_at.timestamp()),
    }
    if verdict.device_id is not None:
        attributes["device_id"] = str(verdict.device_id)
    if verdict.posture_age_s is not None:
        attributes["posture_age_s"] = int(verdict.posture_age_s)
    if verdict.evaluated_policy_ids:
        attributes["posture_policy_ids"] = list(verdict.evaluated_policy_ids)
    for key in ("username", "email", "name"):
        if user.get(key):
            attributes[key] = str(user[key])
    return attributes


def _success(tx: Mapping[str, Any], verdict: Decision) -> Response:
    idp = current_idp()
    saml, user = tx["saml"], tx["user"]
    sp = idp.provider(saml["sp"])
    if sp is None:  # cannot happen without a restart that dropped the SP: nothing is sent
        return error_page("unknown_sp", "This application is no longer registered.", 400)
    name_id = _name_id(sp, tx)
    if name_id is None:
        return _error_answer_for(tx, SamlStatus.INVALID_NAMEID_POLICY, "nameid_unavailable")
    password = "pwd" in user.get("amr", [])
    try:
        issued = build_response(
            idp_entity_id=idp.entity_id,
            sp=sp,
            acs_url=saml["acs"],
            in_response_to=saml["request_id"],
            name_id=name_id.value,
            name_id_format=name_id.format,
            session_index=str(tx.get("sid") or new_id()),
            authn_instant=datetime.fromtimestamp(int(user["auth_time"]), UTC),
            signer=idp.signer,
            now=datetime.now(UTC),
            authn_context_class_ref=AC_PASSWORD_PROTECTED_TRANSPORT if password else AC_UNSPECIFIED,
            attributes=_attributes(verdict, user),
        )
    except SamlError as exc:
        log.warning("saml: no Response for %s: %s", sp.entity_id, exc)
        return error_page(exc.reason, "This sign-in cannot be answered.", 400)
    except Exception:  # signing key or encryption failed: nothing is sent (fail closed)
        log.exception("saml: building the Response for %s failed", sp.entity_id)
        return error_page("unavailable", "Sign-in is unavailable right now. Try again.", 503)
    log.info(
        "saml answer sp=%s user=%s outcome=%s device=%s response=%s assertion=%s",
        sp.entity_id,
        user["user_id"],
        verdict.outcome,
        verdict.device_id,
        issued.response_id,
        issued.assertion_id,
    )
    return answer_page(
        issued,
        saml["relay_state"],
        title=f"Signing in to {idp.name_of(sp)}",
        message="Your device was checked. Returning to the application.",
        kind="success",
    )


class SamlFrontEnd:
    """The SAML answer of the shared login pages (:class:`~posture_gateway.login.front_ends.
    LoginFrontEnd`)."""

    @property
    def channel(self) -> Channel:
        return "saml"

    def decided(self, tx: Mapping[str, Any], verdict: Decision) -> Response | None:
        if not tx["saml"]["passive"]:
            return None  # the pages go on: remediation page, warn notice, or issue()
        if verdict.outcome == "block":
            codes = ",".join(r.code for r in verdict.reasons) or "blocked"
            return _error_answer_for(
                tx, SamlStatus.AUTHN_FAILED, f"device_check_failed:{codes}"[:200]
            )
        if verdict.outcome == "warn":
            return _success(tx, verdict)  # no notice page may be shown
        return None

    def needs_credentials(self, tx: Mapping[str, Any]) -> Response | None:
        if tx["saml"]["passive"]:  # no page may ask for them
            return _error_answer_for(tx, SamlStatus.NO_PASSIVE, "other_device")
        return None

    def issue(self, tx: Mapping[str, Any], verdict: Decision) -> Response:
        if verdict.outcome == "block":  # never: the pages issue only admitted verdicts
            return _error_answer_for(tx, SamlStatus.AUTHN_FAILED, "device_check_failed")
        return _success(tx, verdict)
