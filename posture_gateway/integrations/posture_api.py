"""The posture decision API for identity providers and proxies: ``POST /api/v1/decision``.

The call sequence with a device proof: ``POST /api/v1/nonce`` (same authentication) returns a
single-use nonce bound to this API's proof audience and to the caller; the device signs a
login proof over that nonce and audience; the caller sends it in ``device_proof`` to
``POST /api/v1/decision`` within the nonce's lifetime. A nonce issued for anything else (the
browser login, Entra, another caller) is refused and not spent.

Any IdP or reverse proxy asks "may this user reach this application from this device?" and gets
``{outcome, reasons, policy_ids, posture_age_s, evaluated_at, device_id}``. Callers
authenticate with either

- an OAuth 2.0 access token from our own ``/oauth/token`` (client credentials grant) carrying
  the ``posture.decide`` scope, as ``Authorization: Bearer``; or
- mTLS: a client certificate forwarded by a trusted mTLS-terminating proxy (from configured
  addresses only) in a header, pinned by SHA-256 fingerprint to a caller name.

The question becomes an :class:`mdm_core.access.request.AccessRequest` answered by the one
access evaluator (:class:`mdm_core.access.evaluator.AccessEvaluator`), which verifies the
proof once and spends its nonce through this API's nonce store. Every error path answers ``outcome:
block``:
bad credentials 401/403, bad body 400, a service that cannot decide 503. Nothing here ever
returns ``allow`` except a decision the service made.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any, Literal
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from idp_connectors.identity import ExternalIdentity
from mdm_core.access.decision import Decision, block
from mdm_core.access.request import AccessRequest
from mdm_core.device.proof import proof_kid
from mdm_core.read_model import device_key
from mdm_core.read_model.scope import want_versions
from mdm_core.support.json_input import NO_NUL_PATTERN, JsonInputError, loads_bounded
from posture_gateway.access.backends import is_backend_outage
from posture_gateway.access.nonces import BoundNonce, NonceKind, nonce_purpose
from posture_gateway.access.read_model import one_transaction
from posture_gateway.integrations.state import IntegrationsState, integrations

__all__ = [
    "bp",
    "DecisionRequestBody",
    "DecisionResponseBody",
    "ReasonBody",
    "ErrorBody",
    "NonceResponseBody",
    "proof_audience",
    "OPENAPI_PATHS",
    "OPENAPI_MODELS",
    "decision_body",
    "Caller",
    "authenticate_caller",
]

log = logging.getLogger(__name__)

bp = Blueprint("posture_api", __name__)


# ---- wire models (also the OpenAPI schemas) -----------------------------------------------


class DecisionRequestBody(BaseModel):
    """The question. Exactly one of ``client_id`` (OIDC) and ``entity_id`` (SAML)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            # Exactly one application: an OIDC client_id or a SAML entity id.
            "oneOf": [
                {"required": ["client_id"], "properties": {"client_id": {"type": "string"}}},
                {"required": ["entity_id"], "properties": {"entity_id": {"type": "string"}}},
            ]
        },
    )

    user: str = Field(
        min_length=1, max_length=320, pattern=NO_NUL_PATTERN, description="Login name of the user"
    )
    client_id: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=NO_NUL_PATTERN
    )
    entity_id: str | None = Field(
        default=None, min_length=1, max_length=1024, pattern=NO_NUL_PATTERN
    )
    device_proof: str | None = Field(
        default=None,
        min_length=1,
        max_length=16384,
        pattern=NO_NUL_PATTERN,
        description="Device login proof JWT bound to this API's audience",
    )
    device_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=NO_NUL_PATTERN)

    @model_validator(mode="after")
    def _one_application(self) -> DecisionRequestBody:
        if (self.client_id is None) == (self.entity_id is None):
            raise ValueError("give exactly one of client_id and entity_id")
        return self


class ReasonBody(BaseModel):
    code: str
    message: str
    policy_id: str | None = None
    severity: str | None = None


class DecisionResponseBody(BaseModel):
    outcome: Literal["allow", "warn", "restrict", "block"]
    reasons: list[ReasonBody]
    policy_ids: list[str]
    posture_age_s: float | None
    evaluated_at: datetime
    device_id: str | None
    remediation: list[str] = Field(default_factory=list)


class NonceResponseBody(BaseModel):
    """A single-use nonce for ONE device proof to ``POST /api/v1/decision`` by this caller."""

    nonce: str = Field(description="Sign a device login proof over this nonce")
    audience: str = Field(description="The proof's aud: this API's proof audience")
    expires_at: datetime = Field(description="The nonce is refused after this instant")
    expires_in: int = Field(description="Seconds until expires_at")


class ErrorBody(BaseModel):
    """Every refusal: a machine-readable code, a text, and always ``outcome: block``."""

    error: str
    reason: str
    outcome: Literal["block"] = "block"


def decision_body(decision: Decision) -> dict[str, Any]:
    """The JSON object for a decision (shared with other JSON front ends)."""
    return {
        "outcome": decision.outcome,
        "reasons": [
            {
                "code": r.code,
                "message": r.message,
                "policy_id": r.policy_id,
                "severity": r.severity,
            }
            for r in decision.reasons
        ],
        "policy_ids": list(decision.policy_ids),
        "posture_age_s": decision.posture_age_s,
        "evaluated_at": decision.evaluated_at.astimezone(UTC).isoformat(),
        "device_id": decision.device_id,
        "remediation": list(decision.remediation),
    }


def _refuse(status: int, error: str, reason: str, **headers: str) -> Response:
    response = jsonify(error=error, reason=reason, outcome="block")
    response.status_code = status
    response.headers.update(headers)
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- caller authentication ----------------------------------------------------------------


class Caller(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    method: Literal["oauth", "mtls"]


class _AuthFailure(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


def _peer_address() -> str:
    # The TCP peer, even behind werkzeug's ProxyFix (which rewrites REMOTE_ADDR from headers a
    # client controls): trust in a forwarded certificate is trust in the *connection's* peer.
    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    return str(original.get("REMOTE_ADDR") or request.environ.get("REMOTE_ADDR") or "")


def _mtls_caller(st: IntegrationsState, header_value: str) -> Caller:
    cfg = st.settings.posture_api
    peer = _peer_address()
    try:
        peer_ip = ip_address(peer)
    except ValueError:
        peer_ip = None
    if peer_ip is None or not any(peer_ip in net for net in cfg.trusted_proxies):
        log.warning("client certificate header from untrusted address %s refused", peer)
        raise _AuthFailure(401, "mtls_untrusted_proxy", "client certificate header not accepted")
    try:
        cert = x509.load_pem_x509_certificate(unquote(header_value).encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise _AuthFailure(401, "mtls_bad_certificate", "forwarded certificate unreadable") from exc
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise _AuthFailure(401, "mtls_certificate_expired", "client certificate not valid now")
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    for pinned, name in cfg.mtls_clients.items():
        if hmac.compare_digest(pinned, fingerprint):
            return Caller(name=name, method="mtls")
    raise _AuthFailure(401, "mtls_unknown_client", "client certificate is not registered")


def _oauth_caller(st: IntegrationsState, authorization: str) -> Caller:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _AuthFailure(401, "invalid_token", "expected Authorization: Bearer <token>")
    verifier = st.token_verifier()
    if verifier is None:
        raise _AuthFailure(503, "token_verifier_unavailable", "token verification not configured")
    try:
        claims = verifier.verify_access_token(token.strip())
    except Exception as exc:  # any failure of any verifier is a refusal
        if is_backend_outage(exc):  # the store cannot say: 503, not the token's fault
            log.warning("access token not verifiable now: %s", type(exc).__name__)
            raise _AuthFailure(
                503, "token_store_unavailable", "cannot verify the access token now; treat as block"
            ) from exc
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise _AuthFailure(401, "invalid_token", f"access token refused: {reason}") from exc
    scopes = str(claims.get("scope", "")).split()
    if st.settings.posture_api.required_scope not in scopes:
        raise _AuthFailure(
            403, "insufficient_scope", f"token lacks scope {st.settings.posture_api.required_scope}"
        )
    client_id = claims.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise _AuthFailure(401, "invalid_token", "token names no client")
    return Caller(name=client_id, method="oauth")


def authenticate_caller(st: IntegrationsState) -> Caller:
    """Who is calling: mTLS header (trusted proxies only) or bearer token; raises otherwise."""
    cert_header = request.headers.get(st.settings.posture_api.client_cert_header)
    if cert_header:
        return _mtls_caller(st, cert_header)
    authorization = request.headers.get("Authorization")
    if authorization:
        return _oauth_caller(st, authorization)
    raise _AuthFailure(401, "unauthorized", "no credentials: use a bearer token or mTLS")


# ---- the endpoints ------------------------------------------------------------------------


def proof_audience(st: IntegrationsState) -> str:
    """The ``aud`` a device proof presented to this API must carry."""
    return st.settings.posture_api.proof_audience or f"{st.public_url}/api/v1/decision"


def _auth_refusal(failure: _AuthFailure) -> Response:
    extra = {}
    if failure.status in (401, 403):
        extra["WWW-Authenticate"] = f'Bearer error="{failure.error}"'
    return _refuse(failure.status, failure.error, failure.reason, **extra)


@bp.post("/api/v1/nonce")
@one_transaction
def issue_nonce() -> Response:
    """A nonce for one device proof, bound to this API's audience and to the caller."""
    st = integrations()
    try:
        caller = authenticate_caller(st)
    except _AuthFailure as failure:
        return _auth_refusal(failure)
    audience = proof_audience(st)
    ttl: timedelta = st.settings.posture_api.nonce_ttl
    try:
        purpose = nonce_purpose(NonceKind.API_DECISION, audience=audience, caller=caller.name)
        nonce = st.nonce_store().issue(ttl, purpose=purpose)
    except Exception:
        log.exception("nonce store failed; no nonce issued")
        return _refuse(503, "nonce_unavailable", "cannot issue a nonce now")
    expires_at = datetime.now(UTC) + ttl
    response = jsonify(
        nonce=nonce,
        audience=audience,
        expires_at=expires_at.isoformat(),
        expires_in=int(ttl.total_seconds()),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/api/v1/decision")
@one_transaction
def decide() -> Response:
    st = integrations()
    payload: Any = None
    bad_json: JsonInputError | None = None
    try:  # the one bounded JSON parser (depth, size, encoding): bad JSON is a 400, never a 500
        payload = loads_bounded(request.get_data(cache=False)) if request.is_json else None
    except JsonInputError as exc:
        bad_json = exc
    if isinstance(payload, dict):
        # The device whose version the request reads with tokens and directory, in ONE
        # statement: the proof's kid (unverified: reading a version reveals nothing).
        kid = proof_kid(payload.get("device_proof"))
        if kid is not None:
            want_versions(device_key(kid))
    try:
        caller = authenticate_caller(st)
    except _AuthFailure as failure:
        return _auth_refusal(failure)
    if bad_json is not None:
        return _refuse(400, "invalid_request", f"body: {bad_json.message}")
    if not isinstance(payload, dict):
        return _refuse(400, "invalid_request", "body must be a JSON object")
    try:
        body = DecisionRequestBody.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return _refuse(400, "invalid_request", f"{where}: {first['msg']}")
    now = datetime.now(UTC)
    try:
        user_id = st.user_directory.resolve(
            ExternalIdentity(
                issuer=f"posture-api:{caller.name}", subject=body.user, username=body.user
            )
        )
    except Exception:
        log.exception("user directory failed; refusing")
        return _refuse(503, "directory_unavailable", "cannot resolve the user now")
    if user_id is None:
        decision = block(
            "user_unknown", "No active user with this login.", now=now, device_id=body.device_id
        )
        return _decision_response(decision)
    audience = proof_audience(st)
    purpose = nonce_purpose(NonceKind.API_DECISION, audience=audience, caller=caller.name)
    access = AccessRequest(
        user_id=user_id,
        application=body.client_id or body.entity_id or "",
        channel="posture_api",
        caller=caller.name,
        device_id=body.device_id,
        device_proof=body.device_proof,
        proof_audience=audience,
        # The proof's nonce must be one this API issued to this caller (POST /api/v1/nonce):
        # spent once the proof's signature holds; a browser-login nonce is unknown here.
        spend_nonce=BoundNonce(st.nonce_store(), purpose),
    )
    answer: Decision | None = None
    try:
        answer = st.evaluator.decide(access)
    except Exception:
        log.exception("access evaluator failed; answering block")
    if answer is None or answer.unavailable:
        return _refuse(503, "decision_unavailable", "cannot decide now; treat as block")
    return _decision_response(answer)


def _decision_response(decision: Decision) -> Response:
    response = jsonify(decision_body(decision))
    response.headers["Cache-Control"] = "no-store"
    return response


_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


_SECURITY = [{"clientCredentials": ["posture.decide"]}, {"forwardedClientCert": []}]

# The whole call sequence, in the OpenAPI document itself.
_SEQUENCE = """With a device proof the call sequence is:

1. `POST /api/v1/nonce` (authenticated exactly like the decision) returns `nonce`,
   `audience` and `expires_at`. The nonce is single use and bound to this API's proof
   audience AND to the calling client: a nonce from the browser login, from Entra or from
   another caller is refused (`nonce_invalid`) and is not spent.
2. The device signs a login proof (ES256 JWT, `typ: device-login+jwt`, with its enrolled key)
   whose `nonce` is that nonce and whose `aud` is that audience (the reference agent:
   `GET http://127.0.0.1:<agent_port>/v1/login-proof?nonce=<nonce>&aud=<audience>`).
3. `POST /api/v1/decision` with the proof in `device_proof`, before `expires_at`. The nonce
   is spent whatever the outcome; a second use is `block` with `nonce_invalid`.
"""

# The OpenAPI path items this blueprint serves (collected by posture_gateway.api.openapi).
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/nonce": {
        "post": {
            "operationId": "issueDecisionNonce",
            "summary": "A single-use nonce for one device proof to /api/v1/decision",
            "description": _SEQUENCE,
            "tags": ["posture"],
            "security": _SECURITY,
            "responses": {
                "200": {
                    "description": "The nonce, the audience the proof must name, its expiry",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/NonceResponseBody"}
                        }
                    },
                },
                "401": _error_response("No or invalid credentials; outcome block"),
                "403": _error_response("Token lacks the posture.decide scope; outcome block"),
                "503": _error_response("Cannot issue a nonce now (nonce_unavailable)"),
            },
        }
    },
    "/api/v1/decision": {
        "post": {
            "operationId": "decide",
            "summary": "Posture decision for a user, an application and (optionally) a device",
            "description": _SEQUENCE,
            "tags": ["posture"],
            "security": _SECURITY,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/DecisionRequestBody"}
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "The decision (allow, warn, restrict or block)",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/DecisionResponseBody"}
                        }
                    },
                },
                "400": _error_response("Malformed request; outcome block"),
                "401": _error_response("No or invalid credentials; outcome block"),
                "403": _error_response("Token lacks the posture.decide scope; outcome block"),
                "413": {"description": "Body larger than the configured limit"},
                "503": _error_response("Cannot decide now; treat as block"),
            },
        }
    },
}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (
    DecisionRequestBody,
    DecisionResponseBody,
    ReasonBody,
    ErrorBody,
    NonceResponseBody,
)
