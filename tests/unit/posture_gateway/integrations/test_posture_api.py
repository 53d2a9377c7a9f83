"""POST /api/v1/decision: OAuth bearer and mTLS authentication, input checks, fail closed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any
from urllib.parse import quote

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask

from posture_gateway.integrations.settings import IntegrationSettings, PostureApiSettings
from posture_gateway.oidc.grants import GrantSubject, TokenRecord
from posture_gateway.oidc.server import EXTENSION_KEY, OIDCProvider
from posture_gateway.oidc.tokens import TokenIssuer
from tests.unit.posture_gateway.integrations.conftest import (
    PUBLIC_URL,
    DictDirectory,
    ScriptedDecisions,
)

URL = "/api/v1/decision"
BODY = {
    "user": "alice",
    "client_id": "payroll",
    "device_id": "dev-1",
    "device_proof": "proof.jwt.x",
}


def _cert(days_valid: int = 30, *, start_offset_days: int = -1) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-proxy-client")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=start_offset_days))
        .not_valid_after(now + timedelta(days=start_offset_days + days_valid))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return pem, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


PINNED_PEM, PINNED_FP = _cert()
EXPIRED_PEM, EXPIRED_FP = _cert(days_valid=1, start_offset_days=-10)


@pytest.fixture
def integration_settings() -> IntegrationSettings:
    return IntegrationSettings(
        posture_api=PostureApiSettings(
            trusted_proxies=(ip_network("127.0.0.1/32"),),
            mtls_clients={PINNED_FP: "edge-proxy", EXPIRED_FP: "old-proxy"},
        )
    )


def provider(app: Flask) -> OIDCProvider:
    found = app.extensions[EXTENSION_KEY]
    assert isinstance(found, OIDCProvider)
    return found


def issue(app: Flask, *, scope: str = "posture.decide", issuer: TokenIssuer | None = None) -> str:
    """An access token of our OP for client ``okta-idp``, recorded in the grant store."""
    op = provider(app)
    issued = (issuer or op.issuer).access_token(
        subject="okta-idp", client_id="okta-idp", scope=scope
    )
    now = datetime.now(UTC)
    op.tokens.save(
        TokenRecord(
            id=issued.jti,
            client_id="okta-idp",
            scope=scope,
            subject=GrantSubject(
                user_id="okta-idp",
                auth_time=int(now.timestamp()),
                acr="",
                amr=(),
                machine=True,  # as the client-credentials grant records it
            ),
            family_id="f-" + issued.jti,
            issued_at=now,
            access_expires_at=issued.expires_at,
        )
    )
    return issued.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response: Any, status: int, error: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["outcome"] == "block"
    assert response.json["error"] == error
    assert response.json["reason"]


@pytest.fixture
def alice(directory: DictDirectory) -> str:
    directory.by_username["alice"] = "u-alice"
    return "u-alice"


def test_allow_with_client_credentials_token(
    app: Flask, decisions: ScriptedDecisions, alice: str
) -> None:
    response = app.test_client().post(URL, json=BODY, headers=bearer(issue(app)))
    assert response.status_code == 200
    assert response.json == {
        "outcome": "allow",
        "reasons": [],
        "policy_ids": ["baseline"],
        "posture_age_s": 42.0,
        "evaluated_at": "2026-11-23T09:00:00+00:00",
        "device_id": "dev-1",
        "remediation": [],
    }
    asked = decisions.requests[0]
    assert asked.user_id == alice
    assert asked.application == "payroll"
    assert asked.channel == "posture_api"
    assert asked.caller == "okta-idp"
    assert asked.device_proof == "proof.jwt.x"
    assert asked.device_id == "dev-1"
    assert asked.proof_audience == f"{PUBLIC_URL}/api/v1/decision"
    assert response.headers["Cache-Control"] == "no-store"


def test_saml_entity_id(app: Flask, decisions: ScriptedDecisions, alice: str) -> None:
    body = {"user": "alice", "entity_id": "https://sp.example/saml"}
    response = app.test_client().post(URL, json=body, headers=bearer(issue(app)))
    assert response.status_code == 200
    assert decisions.requests[0].application == "https://sp.example/saml"


def test_without_credentials(app: Flask, decisions: ScriptedDecisions, alice: str) -> None:
    response = app.test_client().post(URL, json=BODY)
    assert_refused(response, 401, "unauthorized")
    assert "Bearer" in response.headers["WWW-Authenticate"]
    assert decisions.requests == []


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt", "Bearer a.b.c", "token x"],
)
def test_malformed_authorization(
    app: Flask, decisions: ScriptedDecisions, alice: str, header: str
) -> None:
    response = app.test_client().post(URL, json=BODY, headers={"Authorization": header})
    assert_refused(response, 401, "invalid_token")
    assert decisions.requests == []


def test_expired_token(app: Flask, decisions: ScriptedDecisions, alice: str) -> None:
    op = provider(app)
    past = TokenIssuer(
        op.keys,
        issuer=op.issuer.issuer,
        id_token_ttl=timedelta(minutes=5),
        access_token_ttl=timedelta(minutes=5),
        clock=lambda: datetime.now(UTC) - timedelta(hours=1),
    )
    response = app.test_client().post(URL, json=BODY, headers=bearer(issue(app, issuer=past)))
    assert_refused(response, 401, "invalid_token")
    assert "expired" in response.json["reason"]
    assert decisions.requests == []


def test_wrong_audience_token(app: Flask, decisions: ScriptedDecisions, alice: str) -> None:
    op = provider(app)
    now = int(datetime.now(UTC).timestamp())
    token = op.keys.sign_jwt(
        {
            "iss": op.issuer.issuer,
            "sub": "okta-idp",
            "aud": "https://some-other-resource.example",
            "client_id": "okta-idp",
            "scope": "posture.decide",
            "jti": "wrong-aud",
            "iat": now,
            "exp": now + 300,
        },
        {"typ": "at+jwt"},
    )
    response = app.test_client().post(URL, json=BODY, headers=bearer(token))
    assert_refused(response, 401, "invalid_token")
    assert "wrong_audience" in response.json["reason"]
    assert decisions.requests == []


def test_token_signed_but_never_issued(
    app: Flask, decisions: ScriptedDecisions, alice: str
) -> None:
    op = provider(app)
    issued = op.issuer.access_token(subject="x", client_id="okta-idp", scope="posture.decide")
    response = app.test_client().post(URL, json=BODY, headers=bearer(issued.token))
    assert_refused(response, 401, "invalid_token")  # not in the grant store: unknown issuance


def test_revoked_token(app: Flask, decisions: ScriptedDecisions, alice: str) -> None:
    token = issue(app)
    jti = pyjwt.decode(token, options={"verify_signature": False})["jti"]
    assert provider(app).tokens.revoke(token_id=jti, reason="test") == 1
    response = app.test_client().post(URL, json=BODY, headers=bearer(token))
    assert_refused(response, 401, "invalid_token")


def test_token_without_the_scope(app: Flask, decisions: ScriptedDecisions, alice: str) -> None:
    response = app.test_client().post(URL, json=BODY, headers=bearer(issue(app, scope="openid")))
    assert_refused(response, 403, "insufficient_scope")
    assert decisions.requests == []


def test_mtls_from_trusted_proxy(app: Flask, decisions: ScriptedDecisions, alice: str) -> None:
    response = app.test_client().post(URL, json=BODY, headers={"X-Client-Cert": quote(PINNED_PEM)})
    assert response.status_code == 200
    assert decisions.requests[0].caller == "edge-proxy"


def test_mtls_header_from_untrusted_address(
    app: Flask, decisions: ScriptedDecisions, alice: str
) -> None:
    response = app.test_client().post(
        URL,
        json=BODY,
        headers={"X-Client-Cert": quote(PINNED_PEM)},
        environ_base={"REMOTE_ADDR": "10.20.30.40"},
    )
    assert_refused(response, 401, "mtls_untrusted_proxy")
    assert decisions.requests == []


def test_mtls_header_beats_a_valid_bearer_from_untrusted_address(
    app: Flask, decisions: ScriptedDecisions, alice: str
) -> None:
    # A forwarded certificate from the wrong place is an attack signal: refuse outright.
    response = app.test_client().post(
        URL,
        json=BODY,
        headers={"X-Client-Cert": quote(PINNED_PEM), **bearer(issue(app))},
        environ_base={"REMOTE_ADDR": "10.20.30.40"},
    )
    assert_refused(response, 401, "mtls_untrusted_proxy")


def test_proxyfix_cannot_launder_the_peer_address(
    app: Flask, decisions: ScriptedDecisions, alice: str
) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    response = app.test_client().post(
        URL,
        json=BODY,
        headers={"X-Client-Cert": quote(PINNED_PEM), "X-Forwarded-For": "127.0.0.1"},
        environ_base={"REMOTE_ADDR": "10.20.30.40"},
    )
    assert_refused(response, 401, "mtls_untrusted_proxy")


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (quote(_cert()[0]), "mtls_unknown_client"),
        (quote(EXPIRED_PEM), "mtls_certificate_expired"),
        ("not a certificate", "mtls_bad_certificate"),
        (
            quote("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            "mtls_bad_certificate",
        ),
    ],
)
def test_mtls_bad_certificates(
    app: Flask, decisions: ScriptedDecisions, alice: str, header: str, error: str
) -> None:
    response = app.test_client().post(URL, json=BODY, headers={"X-Client-Cert": header})
    assert_refused(response, 401, error)
    assert decisions.requests == []


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "alice",
        {},
        {"user": "alice"},
        {"client_id": "payroll"},
        {"user": "", "client_id": "payroll"},
        {"user": "alice", "client_id": "payroll", "entity_id": "urn:sp"},
        {"user": "alice", "client_id": "payroll", "extra": 1},
        {"user": "alice", "client_id": "payroll", "device_id": "x" * 65},
        {"user": "a" * 321, "client_id": "payroll"},
        {"user": 7, "client_id": "payroll"},
    ],
)
def test_bad_bodies(app: Flask, decisions: ScriptedDecisions, alice: str, body: Any) -> None:
    client = app.test_client()
    headers = bearer(issue(app))
    if body is None:
        response = client.post(
            URL, data="{not json", headers=headers, content_type="application/json"
        )
    else:
        response = client.post(URL, json=body, headers=headers)
    assert_refused(response, 400, "invalid_request")
    assert decisions.requests == []


def test_unknown_user_is_blocked_without_asking_the_engine(
    app: Flask, decisions: ScriptedDecisions, directory: DictDirectory
) -> None:
    response = app.test_client().post(URL, json=BODY, headers=bearer(issue(app)))
    assert response.status_code == 200
    assert response.json["outcome"] == "block"
    assert response.json["reasons"][0]["code"] == "user_unknown"
    assert decisions.requests == []


def test_directory_down_fails_closed(
    app: Flask, decisions: ScriptedDecisions, directory: DictDirectory
) -> None:
    directory.fail = True
    response = app.test_client().post(URL, json=BODY, headers=bearer(issue(app)))
    assert_refused(response, 503, "directory_unavailable")


def test_engine_failure_fails_closed(app: Flask, decisions: ScriptedDecisions, alice: str) -> None:
    decisions.error = RuntimeError("policy store down")
    response = app.test_client().post(URL, json=BODY, headers=bearer(issue(app)))
    assert_refused(response, 503, "decision_unavailable")
    assert "allow" not in response.get_data(as_text=True)


def test_oversized_body(app: Flask, decisions: ScriptedDecisions, alice: str) -> None:
    big = {"user": "alice", "client_id": "payroll", "device_proof": "x" * (300 * 1024)}
    response = app.test_client().post(URL, json=big, headers=bearer(issue(app)))
    assert response.status_code == 413
    assert decisions.requests == []
