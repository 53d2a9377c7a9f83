"""Bad input to the IdP-facing endpoints gets a clear 4xx, never a 500 and never a false
"outage" (issue 7, finding 12): deeply nested JSON, a NUL in the user, hostile encodings, the
Entra ``claims`` parameter, oversized Entra parameters; the Entra login transaction is kept
server side; every page and response carries the security headers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from pydantic import SecretStr

from idp_connectors.entra import EntraHintSettings
from posture_gateway.integrations.settings import (
    EntraEamSettings,
    IntegrationSettings,
    OktaHookSettings,
)
from tests.helpers.entra_double import EntraDouble
from tests.unit.posture_gateway.integrations.conftest import (
    ENTRA,
    DictDirectory,
    ScriptedDecisions,
    ScriptedGate,
    hidden_fields,
)
from tests.unit.posture_gateway.integrations.test_entra_eam import CLIENT_ID as EAM_CLIENT
from tests.unit.posture_gateway.integrations.test_okta_hook import OKTA_REQUEST
from tests.unit.posture_gateway.integrations.test_posture_api import BODY, bearer, issue

OKTA_SECRET = "okta-hook-shared-secret-0123456789"
DEEP = 20_000  # far past Python's recursion limit, within the body limit


@pytest.fixture
def integration_settings() -> IntegrationSettings:
    return IntegrationSettings(
        okta=OktaHookSettings(secret=SecretStr(OKTA_SECRET)),
        entra=EntraEamSettings(
            hint=EntraHintSettings(tenant_ids=(ENTRA.tenant_id,), app_id=ENTRA.app_id),
            client_id=EAM_CLIENT,
        ),
    )


def _decide(app: Flask, raw: bytes) -> Any:
    headers = {**bearer(issue(app)), "Content-Type": "application/json"}
    return app.test_client().post("/api/v1/decision", data=raw, headers=headers)


def _okta(app: Flask, raw: bytes) -> Any:
    headers = {"Authorization": OKTA_SECRET, "Content-Type": "application/json"}
    return app.test_client().post("/hooks/okta/token", data=raw, headers=headers)


HOSTILE = {
    "deep_array": b"[" * DEEP + b"]" * DEEP,
    "deep_object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "invalid_utf8": b'{"user": "\xff\xfe"}',
    "utf16_bom": '{"user": "alice", "client_id": "payroll"}'.encode("utf-16"),
    "utf8_bom": b'\xef\xbb\xbf{"user": "alice", "client_id": "payroll"}',
    "nan": b'{"user": "alice", "client_id": "payroll", "x": NaN}',
    "infinity": b'{"user": "alice", "client_id": "payroll", "x": -Infinity}',
    "overflow": b'{"user": "alice", "client_id": "payroll", "x": 1e999999}',
    "huge_int": b'{"user": "alice", "client_id": "payroll", "x": ' + b"9" * 5000 + b"}",
    "duplicate_keys": b'{"user": "alice", "user": "bob", "client_id": "payroll"}',
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_decision_refuses_hostile_json_with_400(
    app: Flask, directory: DictDirectory, decisions: ScriptedDecisions, kind: str
) -> None:
    response = _decide(app, HOSTILE[kind])
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.json["error"] == "invalid_request"
    assert response.json["outcome"] == "block"
    assert directory.seen == [] and decisions.requests == []


def test_a_nul_in_the_user_is_bad_input_not_an_outage(
    app: Flask, directory: DictDirectory, decisions: ScriptedDecisions
) -> None:
    raw = json.dumps({**BODY, "user": "alice\u0000admin"}).encode()
    response = _decide(app, raw)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert directory.seen == []  # never reached the directory (which would answer 503)


@pytest.mark.parametrize("kind", ["deep_array", "deep_object", "invalid_utf8", "nan"])
def test_okta_hook_refuses_hostile_json_with_400(
    app: Flask, directory: DictDirectory, decisions: ScriptedDecisions, kind: str
) -> None:
    response = _okta(app, HOSTILE[kind])
    assert response.status_code == 400
    assert decisions.requests == []


def test_okta_hook_refuses_a_nul_in_the_fields_it_reads(
    app: Flask, directory: DictDirectory, decisions: ScriptedDecisions
) -> None:
    body = json.loads(json.dumps(OKTA_REQUEST))
    body["data"]["context"]["user"]["profile"]["login"] = "alice\u0000"
    response = _okta(app, json.dumps(body).encode())
    assert response.status_code == 400
    assert directory.seen == []


@pytest.mark.parametrize(
    "claims",
    [
        "[" * 2000 + "]" * 2000,  # past the recursion limit, within the parameter's length
        '{"id_token": ' * 5_000 + "{}" + "}" * 5_000,  # past the parameter's length
        '{"id_token": {"acr": {"values": [NaN]}}}',
        '{"id_token": {}, "id_token": {"acr": {"values": ["x"]}}}',
        '{"id_token": {"acr": {"values": ["' + "x" * 5000 + '"]}}}',
    ],
)
def test_entra_claims_parameter_refused_by_form_post(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate, claims: str
) -> None:
    form = entra.authorize_form(client_id=EAM_CLIENT, id_token_hint=entra.hint(alice_claims))
    form["claims"] = claims
    response = app.test_client().post("/entra/eam/authorize", data=form)
    assert response.status_code in (200, 400)  # a form_post answer or a refusal page
    page = response.get_data(as_text=True)
    if response.status_code == 200:
        assert hidden_fields(page)["error"] == "invalid_request"
    assert gate.calls == []


def test_entra_oversized_state_is_refused_and_transaction_kept_server_side(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate
) -> None:
    client = app.test_client()
    form = entra.authorize_form(client_id=EAM_CLIENT, id_token_hint=entra.hint(alice_claims))
    form["state"] = "s" * 60_000
    refused = client.post("/entra/eam/authorize", data=form)
    assert refused.status_code == 400
    assert len(refused.headers.get("Set-Cookie", "")) < 400
    form["state"] = "s" * 4000  # accepted, and it stays out of the cookie
    page = client.post("/entra/eam/authorize", data=form)
    assert page.status_code == 200
    cookie = client.get_cookie("session")
    assert cookie is not None and len(cookie.value) < 300, len(cookie.value)
    fields = hidden_fields(page.get_data(as_text=True))
    done = client.post(
        "/entra/eam/complete",
        data={"txn": fields["txn"], "device_nonce": fields["device_nonce"], "proof": "p"},
    )
    assert hidden_fields(done.get_data(as_text=True))["state"] == "s" * 4000


def test_entra_answers_temporarily_unavailable_when_the_store_is_down(
    app: Flask,
    entra: EntraDouble,
    alice_claims: dict[str, Any],
    gate: ScriptedGate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from posture_gateway.login.transactions import EXTENSION_KEY

    def down(*_: Any, **__: Any) -> Any:
        raise ConnectionError("store down")

    monkeypatch.setattr(app.extensions[EXTENSION_KEY], "create", down)
    form = entra.authorize_form(client_id=EAM_CLIENT, id_token_hint=entra.hint(alice_claims))
    page = app.test_client().post("/entra/eam/authorize", data=form)
    assert hidden_fields(page.get_data(as_text=True))["error"] == "temporarily_unavailable"


def _assert_security_headers(response: Any) -> None:
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert response.headers.get("Referrer-Policy") == "no-referrer"
    if response.mimetype == "text/html":
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_every_page_and_response_carries_the_security_headers(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate
) -> None:
    client = app.test_client()
    form = entra.authorize_form(client_id=EAM_CLIENT, id_token_hint=entra.hint(alice_claims))
    page = client.post("/entra/eam/authorize", data=form)
    fields = hidden_fields(page.get_data(as_text=True))
    responses = [
        page,
        client.post(
            "/entra/eam/complete",
            data={"txn": fields["txn"], "device_nonce": fields["device_nonce"], "proof": "p"},
        ),
        client.post("/entra/eam/complete", data={"txn": "unknown"}),  # error page
        client.post("/entra/eam/authorize", data={"client_id": "nobody"}),
        client.get("/entra/eam/.well-known/openid-configuration"),
        client.get("/entra/eam/jwks.json"),
        client.get("/openapi.json"),
        client.get("/healthz"),
        client.post("/api/v1/decision", json=BODY),  # 401
        client.get("/no/such/page"),  # 404
        client.get("/mdm/v1/privacy-notice"),
    ]
    for response in responses:
        _assert_security_headers(response)
