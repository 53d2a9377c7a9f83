"""Chain mode with Microsoft Entra ID: the gateway as an External Authentication Method (EAM).

Entra discovers us at ``/entra/eam/.well-known/openid-configuration`` (its own issuer
``{public_url}/entra/eam``, sharing the gateway's key ring, whose JWKS entries carry ``x5c``)
and form-POSTs an implicit-flow request to ``/entra/eam/authorize``: ``response_type=id_token``,
``response_mode=form_post``, ``scope=openid``, ``client_id``, ``redirect_uri``, ``nonce``,
``state``, ``claims`` (the requested ``acr``/``amr`` values) and an already-expired
``id_token_hint`` that we validate fully except its expiry
(:mod:`idp_connectors.entra`). The user then goes through the device check every front end
shares (:mod:`posture_gateway.login.device_step`: a local agent proof over a single-use nonce,
the one access evaluator), with the sign-in kept in the
one login transaction store (:mod:`posture_gateway.login.transactions`); the pages are
templates (``pages/templates/entra/``). ``/entra/eam/complete`` answers Entra by
form_post with an RS256 ID token — ``sub`` = the hint's ``sub``, exactly one requested
``acr``, a one-element ``amr``, the nonce echoed — or with ``error=access_denied`` when the
device fails. ``restrict`` is refused too: through Entra we cannot narrow what the user reaches.

Requests we cannot tie to Entra (unknown ``client_id``, unregistered ``redirect_uri``) get an
error page and are never redirected. Contract details: ``docs/integrations/entra.md``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, request, session
from flask.typing import ResponseReturnValue

from idp_connectors.errors import ConnectorError
from mdm_core.access.decision import Decision
from mdm_core.support.json_input import loads_bounded
from posture_gateway.access.nonces import NonceKind
from posture_gateway.api.openapi import not_json
from posture_gateway.integrations.settings import EntraEamSettings
from posture_gateway.integrations.state import IntegrationsState, integrations
from posture_gateway.login.device_step import (
    agent_config,
    agent_origin,
    begin_device_check,
    finish_device_check,
)
from posture_gateway.login.transactions import login_transactions
from posture_gateway.oidc.tokens import TokenIssuer
from posture_gateway.oidc.web import render_page
from posture_gateway.signing.key_ring import KeyRing

__all__ = [
    "bp",
    "EAM_PATH",
    "EamTransaction",
    "requested_values",
    "choose_one",
    "discovery_document",
    "eam_token_issuer",
    "OPENAPI_PATHS",
]

log = logging.getLogger(__name__)

bp = Blueprint("entra_eam", __name__, template_folder="../pages/templates")

EAM_PATH = "/entra/eam"
_SESSION_KEY = "entra_eam"
_MAX_OPEN = 3  # concurrent EAM transactions kept per browser session
_MAX_CLAIMS = 4096  # characters of the claims parameter
#: Longest accepted value per request parameter (characters); others get the default.
_PARAM_LIMITS = {"state": 4096, "nonce": 512, "claims": _MAX_CLAIMS, "id_token_hint": 16384}
_PARAM_DEFAULT_LIMIT = 2048


@dataclass(frozen=True, slots=True)
class EamTransaction:
    """What we remember between Entra's request and our answer (in the shared login
    transaction store; the browser's session holds only the store's id)."""

    id: str
    user_id: str
    sub: str  # the hint's sub, echoed as our sub
    tid: str
    nonce: str  # Entra's nonce, echoed
    state: str
    redirect_uri: str
    acr: str
    amr: str
    device_nonce: str
    expires_at: float


def requested_values(claims_param: str | None, claim: str) -> tuple[str, ...] | None:
    """Values Entra requested for ``claim`` in the ``claims`` parameter's ``id_token`` member.

    ``None`` when the claim is not requested at all; raises ValueError on a malformed
    parameter.
    """
    if not claims_param:
        return None
    parsed = loads_bounded(claims_param, max_depth=8, max_bytes=_MAX_CLAIMS)  # ValueError
    if not isinstance(parsed, dict):
        raise ValueError("claims is not a JSON object")
    id_token = parsed.get("id_token") or {}
    if not isinstance(id_token, dict):
        raise ValueError("claims.id_token is not an object")
    spec = id_token.get(claim)
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"claims.id_token.{claim} is not an object")
    values = spec.get("values")
    if values is None and "value" in spec:
        values = [spec["value"]]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"claims.id_token.{claim}.values is not a list of strings")
    return tuple(values)


def choose_one(ours: tuple[str, ...], requested: tuple[str, ...] | None) -> str | None:
    """Our first preference among the requested values (any of ours if nothing requested)."""
    if requested is None:
        return ours[0] if ours else None
    for value in ours:
        if value in requested:
            return value
    return None


def _issuer(st: IntegrationsState) -> str:
    return f"{st.public_url}{EAM_PATH}"


def eam_token_issuer(cfg: EntraEamSettings, keys: KeyRing, *, public_url: str) -> TokenIssuer:
    """The EAM issuer's ID tokens, on the gateway's key ring (built once, at start)."""
    return TokenIssuer(
        keys,
        issuer=f"{public_url.rstrip('/')}{EAM_PATH}",
        id_token_ttl=cfg.id_token_ttl,
        access_token_ttl=timedelta(minutes=1),  # unused: the EAM issues no access tokens
    )


def discovery_document(st: IntegrationsState) -> dict[str, Any]:
    """OpenID Provider Metadata of the EAM issuer (what Entra reads)."""
    issuer = _issuer(st)
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "jwks_uri": f"{issuer}/jwks.json",
        "scopes_supported": ["openid"],
        "response_types_supported": ["id_token"],
        "response_modes_supported": ["form_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_parameter_supported": True,
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "azp",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "tid",
        ],
        "acr_values_supported": list(st.settings.entra.acr_values) if st.settings.entra else [],
    }


# ---- pages -------------------------------------------------------------------------------------


def _page(
    status: int,
    title: str,
    lines: list[str],
    *,
    answer: Mapping[str, Any] | None = None,
    remediation: tuple[str, ...] = (),
) -> Response:
    """A message page (``entra/message.html``), with the form_post ``answer`` to Entra if any:
    the page may post only to us and to that answer's ``redirect_uri``."""
    return render_page(
        "entra/message.html",
        status,
        form_targets=[answer["action"]] if answer else [],
        title=title,
        lines=lines,
        answer=answer,
        remediation=remediation,
    )


def _form_post(redirect_uri: str, fields: Mapping[str, str], *, auto: bool = True) -> Response:
    """OAuth 2.0 Form Post Response Mode: an auto-submitting form to Entra's redirect_uri."""
    return _page(
        200,
        "Returning to Microsoft",
        [],
        answer={"action": redirect_uri, "fields": dict(fields), "button": "Continue", "auto": auto},
    )


def _error_back(
    redirect_uri: str, state: str, error: str, description: str, *, auto: bool = True
) -> Response:
    fields = {"error": error, "error_description": description}
    if state:
        fields["state"] = state
    return _form_post(redirect_uri, fields, auto=auto)


# ---- endpoints ---------------------------------------------------------------------------------


@bp.get(f"{EAM_PATH}/.well-known/openid-configuration")
def discovery() -> ResponseReturnValue:
    st = integrations()
    if st.settings.entra is None:
        return {"error": "not_found", "reason": "Entra EAM is not configured"}, 404
    return discovery_document(st)


@bp.get(f"{EAM_PATH}/jwks.json")
def jwks() -> ResponseReturnValue:
    st = integrations()
    if st.settings.entra is None:
        return {"error": "not_found", "reason": "Entra EAM is not configured"}, 404
    return st.signing_keys.jwks()


@bp.route(f"{EAM_PATH}/authorize", methods=["GET", "POST"])
@not_json("html page (device check) and form_post answer")
def authorize() -> Response:
    st = integrations()
    cfg = st.settings.entra
    params = request.form if request.method == "POST" else request.args
    if cfg is None or st.entra is None:
        return _page(404, "Not available", ["This gateway is not set up for Microsoft Entra."])
    for name, value in params.items():
        if len(value) > _PARAM_LIMITS.get(name, _PARAM_DEFAULT_LIMIT) or len(name) > 64:
            return _page(400, "Request refused", [f"The parameter {name[:64]} is too long."])
    client_id = params.get("client_id", "")
    redirect_uri = params.get("redirect_uri", "")
    # Until client_id and redirect_uri are ours we answer with a page, never a redirect.
    if not hmac.compare_digest(client_id.encode(), cfg.client_id.encode()):
        return _page(400, "Request refused", ["Unknown client_id."])
    if redirect_uri not in cfg.redirect_uris:
        return _page(400, "Request refused", ["redirect_uri is not registered for this client."])
    state = params.get("state", "")
    if params.get("response_type") != "id_token":
        return _error_back(redirect_uri, state, "unsupported_response_type", "only id_token")
    if params.get("response_mode") != "form_post":
        return _error_back(
            redirect_uri, state, "invalid_request", "response_mode must be form_post"
        )
    if "openid" not in params.get("scope", "").split():
        return _error_back(redirect_uri, state, "invalid_scope", "scope must include openid")
    nonce = params.get("nonce", "")
    if not nonce or len(nonce) > 512:
        return _error_back(redirect_uri, state, "invalid_request", "nonce is required")
    try:
        acr_requested = requested_values(params.get("claims"), "acr")
        amr_requested = requested_values(params.get("claims"), "amr")
    except ValueError as exc:
        return _error_back(redirect_uri, state, "invalid_request", f"claims: {exc}")
    if acr_requested is None and params.get("acr_values"):
        acr_requested = tuple(params["acr_values"].split())
    acr = choose_one(cfg.acr_values, acr_requested)
    amr = choose_one(cfg.amr_values, amr_requested)
    if acr is None or amr is None:
        which = "acr" if acr is None else "amr"
        return _error_back(
            redirect_uri, state, "access_denied", f"none of the requested {which} values is offered"
        )
    try:
        hint = st.entra.validate(params.get("id_token_hint", ""))
    except ConnectorError as exc:
        log.warning("entra eam: id_token_hint refused: %s", exc.reason)
        return _error_back(redirect_uri, state, "invalid_request", f"id_token_hint: {exc.reason}")
    try:
        user_id = st.user_directory.resolve(hint.identity())
    except Exception:
        log.exception("entra eam: user directory failed")
        return _error_back(redirect_uri, state, "temporarily_unavailable", "directory unavailable")
    if user_id is None:
        return _error_back(redirect_uri, state, "access_denied", "user_unknown")
    try:
        device_nonce = begin_device_check(
            st.nonces, cfg.login_ttl, kind=NonceKind.ENTRA_DEVICE, audience=st.device_proof_audience
        )
    except Exception:
        log.exception("entra eam: nonce store failed")
        return _error_back(
            redirect_uri, state, "temporarily_unavailable", "nonce store unavailable"
        )
    txn = EamTransaction(
        id=secrets.token_urlsafe(24),
        user_id=user_id,
        sub=hint.sub,
        tid=hint.tid,
        nonce=nonce,
        state=state,
        redirect_uri=redirect_uri,
        acr=acr,
        amr=amr,
        device_nonce=device_nonce,
        expires_at=time.time() + cfg.login_ttl.total_seconds(),
    )
    try:
        txn_id = _remember(txn, cfg.login_ttl)
    except Exception:
        log.exception("entra eam: login transaction store failed")
        return _error_back(
            redirect_uri, state, "temporarily_unavailable", "transaction store unavailable"
        )
    return render_page(
        "entra/device.html",
        connect=[agent_origin(st.agent_port)],
        action=f"{_issuer(st)}/complete",
        txn=txn_id,
        config=agent_config(
            port=st.agent_port, nonce=device_nonce, audience=st.device_proof_audience
        ),
    )


@bp.post(f"{EAM_PATH}/complete")
@not_json("form_post answer to Entra")
def complete() -> Response:
    st = integrations()
    cfg, issuer = st.settings.entra, st.entra_tokens
    if cfg is None or issuer is None:
        return _page(404, "Not available", ["This gateway is not set up for Microsoft Entra."])
    try:
        txn = _take(request.form.get("txn", ""))
    except Exception:
        log.exception("entra eam: login transaction store failed")
        return _page(503, "Sign-in unavailable", ["Try again in a moment."])
    if txn is None:
        return _page(400, "Sign-in expired", ["Start again from the Microsoft sign-in page."])
    if time.time() > txn.expires_at:
        return _error_back(txn.redirect_uri, txn.state, "access_denied", "device check expired")
    checked = finish_device_check(
        st.evaluator,
        st.nonces,
        kind=NonceKind.ENTRA_DEVICE,
        channel="entra_eam",
        audience=st.device_proof_audience,
        expected_nonce=txn.device_nonce,
        presented_nonce=request.form.get("device_nonce", ""),
        user_id=txn.user_id,
        client_id=cfg.client_id,
        proof=request.form.get("proof") or None,
        client_cert_pem=None,
    )
    # The nonce is bound to this transaction; a different one is a forged or replayed form.
    if checked.nonce_problem == "nonce_mismatch":
        return _error_back(txn.redirect_uri, txn.state, "access_denied", "device check mismatch")
    verdict = checked.verdict
    if verdict.outcome not in ("allow", "warn"):
        log.info("entra eam: device refused for %s: %s", txn.user_id, verdict.outcome)
        return _refusal_page(txn, verdict)
    id_token = issuer.id_token(
        subject=txn.sub,
        audience=cfg.client_id,
        nonce=txn.nonce,
        auth_time=int(time.time()),
        acr=txn.acr,
        amr=[txn.amr],
        extra_claims={"tid": txn.tid},
        alg="RS256",
    )
    fields = {"id_token": id_token}
    if txn.state:
        fields["state"] = txn.state
    return _form_post(txn.redirect_uri, fields)


def _refusal_page(txn: EamTransaction, verdict: Decision) -> Response:
    reasons = [r.message for r in verdict.reasons] or ["This device does not meet the policy."]
    codes = ",".join(r.code for r in verdict.reasons) or verdict.outcome
    response = _page(
        200,
        "This device cannot be used to sign in",
        reasons,
        remediation=verdict.remediation,
        answer={
            "action": txn.redirect_uri,
            "fields": {
                "error": "access_denied",
                "error_description": f"device check failed: {codes}"[:256],
                **({"state": txn.state} if txn.state else {}),
            },
            "button": "Return to Microsoft",
            "auto": False,
        },
    )
    return response


def _remember(txn: EamTransaction, ttl: timedelta) -> str:
    """Keep ``txn`` in the shared login transaction store; this browser's session holds only
    its id (at most ``_MAX_OPEN`` of them). The id goes into the device-check form."""
    txn_id = login_transactions().create(asdict(txn), ttl)
    open_ids = [i for i in session.get(_SESSION_KEY) or [] if isinstance(i, str)]
    session[_SESSION_KEY] = [*open_ids, txn_id][-_MAX_OPEN:]
    return txn_id


def _take(txn_id: str) -> EamTransaction | None:
    """The transaction ``txn_id`` if this browser started it; single use."""
    open_ids = [i for i in session.get(_SESSION_KEY) or [] if isinstance(i, str)]
    if not txn_id or not any(hmac.compare_digest(i.encode(), txn_id.encode()) for i in open_ids):
        return None
    session[_SESSION_KEY] = [i for i in open_ids if i != txn_id]
    raw = login_transactions().take(txn_id)
    if not isinstance(raw, dict):
        return None
    try:
        return EamTransaction(**raw)
    except TypeError:
        return None


_JSON_OBJECT = {"type": "object"}

OPENAPI_PATHS: dict[str, Any] = {
    f"{EAM_PATH}/.well-known/openid-configuration": {
        "get": {
            "operationId": "entraEamDiscovery",
            "summary": "OpenID Provider Metadata of the Entra EAM issuer",
            "tags": ["entra"],
            "security": [],
            "responses": {
                "200": {
                    "description": "Discovery document",
                    "content": {"application/json": {"schema": _JSON_OBJECT}},
                },
                "404": {"description": "Entra EAM is not configured"},
            },
        }
    },
    f"{EAM_PATH}/jwks.json": {
        "get": {
            "operationId": "entraEamJwks",
            "summary": "Signing keys of the Entra EAM issuer (RS256, with x5c)",
            "tags": ["entra"],
            "security": [],
            "responses": {
                "200": {
                    "description": "JWK Set (RFC 7517)",
                    "content": {"application/json": {"schema": _JSON_OBJECT}},
                },
                "404": {"description": "Entra EAM is not configured"},
            },
        }
    },
}
