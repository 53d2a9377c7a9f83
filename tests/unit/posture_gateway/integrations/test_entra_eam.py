"""Microsoft Entra External Authentication Method, end to end against the Entra test double.

Entra form-POSTs the implicit-flow request with an expired id_token_hint; the user passes the
device check; we form_post an ID token that the double verifies the way Entra does. Failure
paths: forged hints (bad signature, wrong issuer, wrong audience, alg none, HS256 with the
public key), acr not among the requested, an unhealthy device, replays.
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient

from idp_connectors.entra import EntraHintSettings
from mdm_core.access.decision import Decision
from posture_gateway.integrations.settings import EntraEamSettings, IntegrationSettings
from tests.helpers.entra_double import REDIRECT_URI, REQUESTED_ACR, EntraDouble
from tests.unit.posture_gateway.integrations.conftest import (
    ENTRA,
    PUBLIC_URL,
    DictDirectory,
    ScriptedGate,
    block_verdict,
    form_action,
    hidden_fields,
)

CLIENT_ID = "eam-client-7f3a"
ISSUER = f"{PUBLIC_URL}/entra/eam"


@pytest.fixture
def integration_settings() -> IntegrationSettings:
    return IntegrationSettings(
        entra=EntraEamSettings(
            hint=EntraHintSettings(tenant_ids=(ENTRA.tenant_id,), app_id=ENTRA.app_id),
            client_id=CLIENT_ID,
        )
    )


def start(client: FlaskClient, form: dict[str, str]) -> Any:
    return client.post("/entra/eam/authorize", data=form)


def finish_device_check(client: FlaskClient, page: str, proof: str = "proof.from.agent") -> Any:
    fields = hidden_fields(page)
    assert form_action(page, "device") == f"{ISSUER}/complete"
    return client.post(
        "/entra/eam/complete",
        data={"txn": fields["txn"], "device_nonce": fields["device_nonce"], "proof": proof},
    )


def answer_of(response: Any) -> dict[str, str]:
    page = response.get_data(as_text=True)
    assert form_action(page, "answer") == REDIRECT_URI
    return hidden_fields(page)


def test_discovery_and_jwks_satisfy_entra(app: Flask, entra: EntraDouble) -> None:
    client = app.test_client()
    discovery = client.get("/entra/eam/.well-known/openid-configuration").json
    assert discovery["issuer"] == ISSUER
    assert discovery["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    assert "id_token" in discovery["response_types_supported"]
    assert "form_post" in discovery["response_modes_supported"]
    jwks = client.get(discovery["jwks_uri"].removeprefix(PUBLIC_URL)).json
    assert jwks["keys"] and all(k.get("x5c") for k in jwks["keys"])


def test_healthy_device_gets_an_id_token_entra_accepts(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate
) -> None:
    client = app.test_client()
    form = entra.authorize_form(
        client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims), nonce="n-123", state="s-456"
    )
    page = start(client, form)
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    answer = answer_of(finish_device_check(client, page.get_data(as_text=True)))
    assert answer["state"] == "s-456"
    assert "error" not in answer
    discovery = client.get("/entra/eam/.well-known/openid-configuration").json
    jwks = client.get("/entra/eam/jwks.json").json
    claims = EntraDouble.check_answer(
        answer["id_token"],
        discovery=discovery,
        jwks=jwks,
        client_id=CLIENT_ID,
        hint_sub=alice_claims["sub"],
        nonce="n-123",
        requested_acr=REQUESTED_ACR,
    )
    assert claims["acr"] == "possessionorinherence"
    assert claims["amr"] == ["pop"]
    assert claims["tid"] == entra.tenant_id
    call = gate.calls[0]
    assert call.user_id == "u-alice" and call.channel == "entra_eam"
    assert call.application == CLIENT_ID
    assert call.device_proof == "proof.from.agent"
    assert call.proof_nonce == hidden_fields(page.get_data(as_text=True))["device_nonce"]


def test_acr_is_exactly_one_of_the_requested(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate
) -> None:
    client = app.test_client()
    requested = ["knowledgeorpossession", "possessionorinherence"]
    form = entra.authorize_form(
        client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims), acr=requested, amr=["hwk"]
    )
    answer = answer_of(finish_device_check(client, start(client, form).get_data(as_text=True)))
    claims = jwt.decode(answer["id_token"], options={"verify_signature": False})
    assert claims["acr"] == "possessionorinherence"
    assert claims["amr"] == ["hwk"]


def test_acr_not_among_the_requested_is_refused(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate
) -> None:
    form = entra.authorize_form(
        client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims), acr=["knowledgeorpossession"]
    )
    answer = answer_of(start(app.test_client(), form))
    assert answer["error"] == "access_denied"
    assert "acr" in answer["error_description"]
    assert "id_token" not in answer
    assert gate.calls == []


def test_amr_we_cannot_claim_is_refused(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any]
) -> None:
    form = entra.authorize_form(
        client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims), amr=["face", "sms"]
    )
    answer = answer_of(start(app.test_client(), form))
    assert answer["error"] == "access_denied"


@pytest.mark.parametrize(
    ("verdict", "code"),
    [
        (block_verdict("encryption_off"), "encryption_off"),
        (Decision(outcome="restrict", allowed_scopes=frozenset()), "restrict"),
    ],
)
def test_failing_device_is_access_denied(
    app: Flask,
    entra: EntraDouble,
    alice_claims: dict[str, Any],
    gate: ScriptedGate,
    verdict: Decision,
    code: str,
) -> None:
    gate.verdict = verdict
    client = app.test_client()
    form = entra.authorize_form(
        client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims), state="s1"
    )
    response = finish_device_check(client, start(client, form).get_data(as_text=True))
    page = response.get_data(as_text=True)
    answer = answer_of(response)
    assert answer == {
        "error": "access_denied",
        "error_description": f"device check failed: {code}",
        "state": "s1",
    }
    assert "id_token" not in page
    if verdict.remediation:
        assert "Turn on FileVault." in page  # the user sees how to fix it


def test_gate_failure_is_access_denied(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate
) -> None:
    gate.error = RuntimeError("posture store down")
    client = app.test_client()
    form = entra.authorize_form(client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims))
    answer = answer_of(finish_device_check(client, start(client, form).get_data(as_text=True)))
    assert answer["error"] == "access_denied"
    assert "device_check_failed" in answer["error_description"]  # the shared step's code


def test_unconfigured_gate_is_access_denied(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any]
) -> None:
    client = app.test_client()
    form = entra.authorize_form(client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims))
    answer = answer_of(finish_device_check(client, start(client, form).get_data(as_text=True)))
    assert answer["error"] == "access_denied"


def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


FORGERIES = {
    "bad_signature": lambda e, c: e.hint(c, key=_other_key()),
    "wrong_issuer": lambda e, c: e.hint(
        {**c, "iss": "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0"}
    ),
    "wrong_audience": lambda e, c: e.hint({**c, "aud": "00000000-0000-0000-0000-00000000beef"}),
    "alg_none": lambda e, c: e.unsigned_hint(c),
    "hs256_public_key": lambda e, c: e.hs256_with_public_key(c),
    "missing": lambda e, c: "",
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_hints_are_refused(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate, forgery: str
) -> None:
    hint = FORGERIES[forgery](entra, alice_claims)
    form = entra.authorize_form(client_id=CLIENT_ID, id_token_hint=hint, state="s9")
    answer = answer_of(start(app.test_client(), form))
    assert answer["error"] == "invalid_request"
    assert answer["error_description"].startswith("id_token_hint: token.")
    assert answer["state"] == "s9"
    assert gate.calls == []


def test_unknown_client_id_is_never_redirected(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any]
) -> None:
    form = entra.authorize_form(client_id="someone-else", id_token_hint=entra.hint(alice_claims))
    response = start(app.test_client(), form)
    assert response.status_code == 400
    assert REDIRECT_URI not in response.get_data(as_text=True)


def test_unregistered_redirect_uri_is_never_redirected(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any]
) -> None:
    form = entra.authorize_form(client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims))
    form["redirect_uri"] = "https://attacker.example/collect"
    response = start(app.test_client(), form)
    assert response.status_code == 400
    assert "attacker.example" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("response_type", "code", "unsupported_response_type"),
        ("response_mode", "query", "invalid_request"),
        ("scope", "profile", "invalid_scope"),
        ("nonce", "", "invalid_request"),
        ("claims", "{not json", "invalid_request"),
        ("claims", '{"id_token": {"acr": {"values": "x"}}}', "invalid_request"),
    ],
)
def test_bad_requests_are_answered_by_form_post(
    app: Flask,
    entra: EntraDouble,
    alice_claims: dict[str, Any],
    field: str,
    value: str,
    error: str,
) -> None:
    form = entra.authorize_form(client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims))
    form[field] = value
    assert answer_of(start(app.test_client(), form))["error"] == error


def test_unknown_user_is_access_denied(
    app: Flask, entra: EntraDouble, directory: DictDirectory, gate: ScriptedGate
) -> None:
    form = entra.authorize_form(client_id=CLIENT_ID, id_token_hint=entra.hint())
    answer = answer_of(start(app.test_client(), form))
    assert answer["error"] == "access_denied"
    assert gate.calls == []


def test_completion_is_single_use(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate
) -> None:
    client = app.test_client()
    form = entra.authorize_form(client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims))
    page = start(client, form).get_data(as_text=True)
    assert "id_token" in answer_of(finish_device_check(client, page))
    again = finish_device_check(client, page)
    assert again.status_code == 400
    assert "id_token" not in again.get_data(as_text=True)


def test_tampered_device_nonce_is_refused(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate
) -> None:
    client = app.test_client()
    form = entra.authorize_form(client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims))
    fields = hidden_fields(start(client, form).get_data(as_text=True))
    response = client.post(
        "/entra/eam/complete",
        data={"txn": fields["txn"], "device_nonce": "forged-nonce", "proof": "p"},
    )
    assert answer_of(response)["error"] == "access_denied"
    assert gate.calls == []


def test_completion_from_another_browser_is_refused(
    app: Flask, entra: EntraDouble, alice_claims: dict[str, Any], gate: ScriptedGate
) -> None:
    form = entra.authorize_form(client_id=CLIENT_ID, id_token_hint=entra.hint(alice_claims))
    page = start(app.test_client(), form).get_data(as_text=True)
    stranger = app.test_client()  # no session cookie: the transaction is not theirs
    response = finish_device_check(stranger, page)
    assert response.status_code == 400
    assert gate.calls == []


def test_a_hint_issued_a_year_ago_never_reaches_the_device_check(
    app: Flask,
    entra: EntraDouble,
    alice_claims: dict[str, Any],
    directory: DictDirectory,
    gate: ScriptedGate,
) -> None:
    """Issue 7 finding 10: exp is not checked, but iat bounds the hint's age."""
    import time

    year_ago = int(time.time()) - 365 * 24 * 3600
    old = {**alice_claims, "iat": year_ago, "nbf": year_ago, "exp": year_ago + 300}
    client = app.test_client()
    form = entra.authorize_form(client_id=CLIENT_ID, id_token_hint=entra.hint(old))
    answer = answer_of(start(client, form))
    assert answer["error"] == "invalid_request"
    assert "token.expired" in answer["error_description"]
    assert directory.seen == [] and gate.calls == []  # refused before anything else
