"""The Okta token inline hook: Okta's request/response contract, the shared secret, the budget."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from flask import Flask
from pydantic import SecretStr

from mdm_core.access.decision import Reason
from posture_gateway.integrations.okta_hook import EVENT_TYPE
from posture_gateway.integrations.settings import IntegrationSettings, OktaHookSettings
from tests.unit.posture_gateway.integrations.conftest import DictDirectory, ScriptedDecisions

URL = "/hooks/okta/token"
SECRET = "okta-hook-shared-secret-0123456789"

# A token inline hook request as Okta documents it (trimmed to realistic fields).
OKTA_REQUEST: dict[str, Any] = {
    "source": "https://example.okta.com/oauth2/default/v1/authorize",
    "eventId": "3OWo4oo-QQ-rBWfRyTmQYw",
    "eventTime": "2026-11-23T09:00:00.000Z",
    "eventTypeVersion": "1.0",
    "cloudEventVersion": "0.1",
    "contentType": "application/json",
    "eventType": EVENT_TYPE,
    "data": {
        "context": {
            "request": {
                "id": "reqv66CbCaCStGEFc8AdfS0ng",
                "method": "GET",
                "ipAddress": "203.0.113.7",
            },
            "protocol": {
                "type": "OAUTH2.0",
                "request": {
                    "scope": "openid profile email",
                    "state": "foo",
                    "redirect_uri": "https://app.example/callback",
                    "response_mode": "query",
                    "response_type": "code",
                    "client_id": "0oabskvc6442nkvQO0h7",
                },
                "issuer": {"uri": "https://example.okta.com/oauth2/default"},
                "client": {"id": "0oabskvc6442nkvQO0h7", "name": "Payroll", "type": "PUBLIC"},
            },
            "session": {"id": "102Qoe7t5PcRnSxr8j3I8I6pA", "userId": "00uq8tMo3zV0OfJON0g3"},
            "user": {
                "id": "00uq8tMo3zV0OfJON0g3",
                "passwordChanged": "2026-09-11T23:19:12.000Z",
                "profile": {
                    "login": "alice@example.com",
                    "firstName": "Alice",
                    "lastName": "Doe",
                    "locale": "en",
                    "timeZone": "America/Los_Angeles",
                },
            },
            "policy": {"id": "00p4ktaq2ryOYtsHC0g7", "rule": {"id": "0pr4ktb7elD3ZvrMy0g7"}},
        },
        "identity": {
            "claims": {"sub": "00uq8tMo3zV0OfJON0g3", "ver": 1, "iss": "https://example.okta.com"},
            "token": {"lifetime": {"expiration": 3600}},
        },
        "access": {
            "claims": {"ver": 1, "cid": "0oabskvc6442nkvQO0h7", "sub": "alice@example.com"},
            "token": {"lifetime": {"expiration": 3600}},
            "scopes": {"openid": {"id": "scpq7bW1cp6dcvrz80g3", "action": "GRANT"}},
        },
    },
}

RESERVED = {"sub", "iss", "aud", "exp", "iat", "acr", "amr", "auth_time", "nonce", "cid", "uid"}


@pytest.fixture
def integration_settings() -> IntegrationSettings:
    return IntegrationSettings(okta=OktaHookSettings(secret=SecretStr(SECRET)))


@pytest.fixture
def alice(directory: DictDirectory) -> str:
    directory.by_subject[("okta", "00uq8tMo3zV0OfJON0g3")] = "u-alice"
    return "u-alice"


def post(app: Flask, body: Any = None, secret: str | None = SECRET) -> Any:
    headers = {"Authorization": secret} if secret is not None else {}
    return app.test_client().post(URL, json=OKTA_REQUEST if body is None else body, headers=headers)


def added_claims(response: Any, command_type: str) -> dict[str, Any]:
    command = next(c for c in response.json["commands"] if c["type"] == command_type)
    assert all(op["op"] == "add" and op["path"].startswith("/claims/") for op in command["value"])
    return {op["path"].removeprefix("/claims/"): op["value"] for op in command["value"]}


def test_annotates_id_and_access_tokens(
    app: Flask, decisions: ScriptedDecisions, alice: str
) -> None:
    response = post(app)
    assert response.status_code == 200
    for kind in ("com.okta.identity.patch", "com.okta.access.patch"):
        claims = added_claims(response, kind)
        assert claims["posture_outcome"] == "allow"
        assert claims["posture_policy_ids"] == ["baseline"]
        assert claims["posture_device_id"] == "dev-1"
        assert claims["posture_evaluated_at"] == "2026-11-23T09:00:00+00:00"
        assert not RESERVED & set(claims)  # Okta refuses reserved claims; we never try
    asked = decisions.requests[0]
    assert asked.user_id == alice
    assert asked.application == "0oabskvc6442nkvQO0h7"
    assert asked.channel == "okta_hook"


def test_block_is_annotated_with_reasons(
    app: Flask, decisions: ScriptedDecisions, alice: str
) -> None:
    decisions.decision = type(decisions.decision)(
        outcome="block",
        reasons=(Reason(code="encryption_off", message="Encryption is off"),),
        policy_ids=("baseline",),
        evaluated_at=decisions.decision.evaluated_at,
    )
    claims = added_claims(post(app), "com.okta.access.patch")
    assert claims["posture_outcome"] == "block"
    assert claims["posture_reasons"] == ["encryption_off"]


def test_access_token_only(app: Flask, decisions: ScriptedDecisions, alice: str) -> None:
    body = copy.deepcopy(OKTA_REQUEST)
    del body["data"]["identity"]
    response = post(app, body)
    assert [c["type"] for c in response.json["commands"]] == ["com.okta.access.patch"]


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET[:-1], SECRET.upper()])
def test_missing_or_wrong_secret(
    app: Flask, decisions: ScriptedDecisions, alice: str, secret: str | None
) -> None:
    response = post(app, secret=secret)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert decisions.requests == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(eventType="com.okta.import.transform"),
        lambda b: b.pop("data"),
        lambda b: b["data"].pop("context"),
        lambda b: b["data"]["context"]["user"].pop("id"),
        lambda b: b["data"]["context"]["user"]["profile"].update(login=""),
        lambda b: b["data"]["context"]["protocol"].pop("client"),
    ],
)
def test_not_a_token_hook_request(
    app: Flask, decisions: ScriptedDecisions, alice: str, mutate: Any
) -> None:
    body = copy.deepcopy(OKTA_REQUEST)
    mutate(body)
    response = post(app, body)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert decisions.requests == []


def test_not_json(app: Flask, alice: str) -> None:
    response = app.test_client().post(
        URL, data="{", headers={"Authorization": SECRET}, content_type="application/json"
    )
    assert response.status_code == 400


def test_slow_engine_is_annotated_block_within_the_budget(
    app: Flask, decisions: ScriptedDecisions, alice: str
) -> None:
    decisions.hold = threading.Event()  # the engine answers only when the test says so
    try:
        response = post(app)
        # the budget ended it, not the engine: the engine had not answered yet
        assert not decisions.finished
    finally:
        decisions.hold.set()
    claims = added_claims(response, "com.okta.access.patch")
    assert claims["posture_outcome"] == "block"
    assert claims["posture_reasons"] == ["posture_timeout"]


def test_engine_failure_is_annotated_block(
    app: Flask, decisions: ScriptedDecisions, alice: str
) -> None:
    decisions.error = RuntimeError("down")
    claims = added_claims(post(app), "com.okta.identity.patch")
    assert claims["posture_outcome"] == "block"
    assert claims["posture_reasons"] == ["decision_unavailable"]


def test_unknown_user_is_annotated_block(
    app: Flask, decisions: ScriptedDecisions, directory: DictDirectory
) -> None:
    claims = added_claims(post(app), "com.okta.access.patch")
    assert claims["posture_outcome"] == "block"
    assert claims["posture_reasons"] == ["user_unknown"]
    assert decisions.requests == []


def test_directory_failure_is_annotated_block(
    app: Flask, decisions: ScriptedDecisions, directory: DictDirectory
) -> None:
    directory.fail = True
    claims = added_claims(post(app), "com.okta.access.patch")
    assert claims["posture_reasons"] == ["directory_unavailable"]
