"""Okta token inline hook: ``POST /hooks/okta/token`` — ANNOTATION ONLY.

Okta calls this while minting tokens (event ``com.okta.oauth2.tokens.transform``) and applies
the ``commands`` we answer: ``com.okta.identity.patch`` / ``com.okta.access.patch`` with JSON
Patch ``add`` operations on non-reserved claims (``posture_outcome``, ``posture_reasons``,
``posture_policy_ids``, ``posture_evaluated_at``, ``posture_device_id``).

Okta fails OPEN: on a timeout (3 s, one retry) or an error it issues the original token, and a
hook may not set reserved claims (``acr``, ``amr``, ``device_*``). So this hook annotates and
never enforces; enforcement with Okta is the gateway as a SAML factor (a later issue). See
``docs/integrations/okta.md``. Within what we control we still fail closed: a decision that
errors or misses the budget is annotated ``block``.

Authentication: the hook's shared secret, sent by Okta in the configured header, compared in
constant time. A missing or wrong secret is 401 and nothing is evaluated.
"""

from __future__ import annotations

import hmac
import logging
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any, Literal

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from idp_connectors.identity import ExternalIdentity
from mdm_core.access.decision import Decision, block
from mdm_core.access.request import AccessRequest
from mdm_core.support.json_input import NO_NUL_PATTERN, JsonInputError, loads_bounded
from posture_gateway.integrations.state import IntegrationsState, integrations

__all__ = [
    "bp",
    "EVENT_TYPE",
    "TokenHookRequest",
    "TokenHookResponse",
    "annotation_commands",
    "OPENAPI_PATHS",
    "OPENAPI_MODELS",
]

log = logging.getLogger(__name__)

bp = Blueprint("okta_hook", __name__)

EVENT_TYPE = "com.okta.oauth2.tokens.transform"


# ---- Okta's request (only the parts we read; Okta sends much more) ---------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class OktaUserProfile(_Open):
    login: str = Field(min_length=1, max_length=320, pattern=NO_NUL_PATTERN)


class OktaUser(_Open):
    id: str = Field(min_length=1, max_length=128, pattern=NO_NUL_PATTERN)
    profile: OktaUserProfile


class OktaClient(_Open):
    id: str = Field(min_length=1, max_length=256, pattern=NO_NUL_PATTERN)


class OktaProtocol(_Open):
    client: OktaClient


class OktaContext(_Open):
    user: OktaUser
    protocol: OktaProtocol


class OktaTokenData(_Open):
    context: OktaContext
    identity: dict[str, Any] | None = None  # present when an ID token is being minted
    access: dict[str, Any] | None = None  # present when an access token is being minted


class TokenHookRequest(_Open):
    """Okta's token inline hook request (CloudEvents-style envelope)."""

    eventType: Literal["com.okta.oauth2.tokens.transform"]  # noqa: N815 - Okta's field name
    data: OktaTokenData


class PatchOperation(BaseModel):
    op: str
    path: str
    value: Any


class HookCommand(BaseModel):
    type: str
    value: list[PatchOperation]


class TokenHookResponse(BaseModel):
    commands: list[HookCommand]


class HookError(BaseModel):
    error: str
    reason: str
    outcome: str = "block"


# ---- the hook --------------------------------------------------------------------------------


def annotation_commands(
    decision: Decision, *, identity: bool, access: bool
) -> list[dict[str, Any]]:
    """The ``commands`` that add the posture claims to the tokens being minted."""
    claims: dict[str, Any] = {
        "posture_outcome": decision.outcome,
        "posture_reasons": [r.code for r in decision.reasons],
        "posture_policy_ids": list(decision.policy_ids),
        "posture_evaluated_at": decision.evaluated_at.astimezone(UTC).isoformat(),
    }
    if decision.device_id:
        claims["posture_device_id"] = decision.device_id
    ops = [{"op": "add", "path": f"/claims/{name}", "value": v} for name, v in claims.items()]
    commands = []
    if identity:
        commands.append({"type": "com.okta.identity.patch", "value": ops})
    if access:
        commands.append({"type": "com.okta.access.patch", "value": ops})
    return commands


def _authorized(st: IntegrationsState) -> bool:
    secret = st.settings.okta.secret
    presented = request.headers.get(st.settings.okta.auth_header, "")
    if secret is None or not presented:
        return False
    return hmac.compare_digest(presented.encode(), secret.get_secret_value().encode())


def _refuse(status: int, error: str, reason: str) -> Response:
    response = jsonify(error=error, reason=reason, outcome="block")
    response.status_code = status
    return response


def _decide_within_budget(app: Flask, st: IntegrationsState, access: AccessRequest) -> Decision:
    def run() -> Decision:
        with app.app_context():
            return st.evaluator.decide(access)

    future = st.executor.submit(run)
    try:
        return future.result(timeout=st.settings.okta.budget.total_seconds())
    except FutureTimeout:
        future.cancel()
        log.warning("okta hook: decision missed the %s budget", st.settings.okta.budget)
        return block("posture_timeout", "The posture decision took too long.")
    except Exception:
        log.exception("okta hook: decision failed; annotating block")
        return block("decision_unavailable", "The posture decision failed.")


@bp.post("/hooks/okta/token")
def token_hook() -> Response:
    st = integrations()
    if not _authorized(st):
        log.warning("okta hook: missing or wrong secret from %s", request.remote_addr)
        return _refuse(401, "unauthorized", "missing or wrong hook secret")
    try:  # the one bounded JSON parser (depth, size, encoding): bad JSON is a 400, never a 500
        body = request.get_data(cache=False)
        # Okta's document carries much we ignore: the fields we read refuse NUL by schema.
        payload = loads_bounded(body, strict_strings=False) if request.is_json else None
    except JsonInputError as exc:
        return _refuse(400, "invalid_request", f"body: {exc.message}")
    if not isinstance(payload, dict):
        return _refuse(400, "invalid_request", "body must be a JSON object")
    try:
        hook = TokenHookRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return _refuse(400, "invalid_request", f"{where}: {first['msg']}")
    user = hook.data.context.user
    now = datetime.now(UTC)
    try:
        user_id = st.user_directory.resolve(
            ExternalIdentity(
                issuer=st.settings.okta.identity_issuer,
                subject=user.id,
                username=user.profile.login,
            )
        )
    except Exception:
        log.exception("okta hook: user directory failed")
        decision = block("directory_unavailable", "Cannot resolve the user now.", now=now)
    else:
        if user_id is None:
            decision = block("user_unknown", "No active user with this login.", now=now)
        else:
            access = AccessRequest(
                user_id=user_id,
                application=hook.data.context.protocol.client.id,
                channel="okta_hook",
                caller="okta",
            )
            app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
            decision = _decide_within_budget(app, st, access)
    commands = annotation_commands(
        decision, identity=hook.data.identity is not None, access=hook.data.access is not None
    )
    return jsonify(commands=commands)


_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/HookError"}}}}

OPENAPI_PATHS: dict[str, Any] = {
    "/hooks/okta/token": {
        "post": {
            "operationId": "oktaTokenInlineHook",
            "summary": "Okta token inline hook: annotates tokens with posture claims",
            "tags": ["okta"],
            "security": [{"oktaHookSecret": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/TokenHookRequest"}
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Patch commands adding posture claims",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/TokenHookResponse"}
                        }
                    },
                },
                "400": {"description": "Not a token inline hook request", **_ERROR},
                "401": {"description": "Missing or wrong hook secret", **_ERROR},
                "413": {"description": "Body larger than the configured limit"},
            },
        }
    }
}
OPENAPI_MODELS: tuple[type[BaseModel], ...] = (TokenHookRequest, TokenHookResponse, HookError)
