"""Stream management over HTTP (SSF 1.0 section 8.1) with real tokens of our OP, including
the attacks: no token, wrong scope, another receiver's stream, forged tokens, bad input.
Every refusal leaves the stream store and the audit log as they were."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mdm_core.storage.sql.tables import audit_log
from posture_gateway.signals.tables import ssf_deliveries, ssf_streams, ssf_subjects
from tests.unit.posture_gateway.signals.conftest import (
    DCC,
    POLL,
    PUBLIC_URL,
    PUSH,
    REVOKED,
    bearer,
    core_of,
    token,
)


def _client(app: Flask) -> FlaskClient:
    return app.test_client()


def _create(app: Flask, tok: str, **body: Any) -> Any:
    payload = {"events_requested": [DCC, REVOKED, "urn:example:unknown"], **body}
    return _client(app).post("/ssf/streams", json=payload, headers=bearer(tok))


def _snapshot(app: Flask) -> tuple[int, ...]:
    with core_of(app).database.transaction() as conn:
        return tuple(
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (ssf_streams, ssf_subjects, ssf_deliveries, audit_log)
        )


def test_configuration_metadata(app: Flask) -> None:
    doc = _client(app).get("/.well-known/ssf-configuration").json
    assert doc["spec_version"] == "1_0"
    assert doc["issuer"] == PUBLIC_URL
    assert doc["jwks_uri"] == PUBLIC_URL + "/jwks.json"
    assert doc["delivery_methods_supported"] == [PUSH, POLL]
    for name in ("configuration", "status", "add_subject", "remove_subject", "verification"):
        assert doc[f"{name}_endpoint"].startswith(PUBLIC_URL + "/ssf/")
    assert doc["authorization_schemes"] == [{"spec_urn": "urn:ietf:rfc:6749"}]
    assert doc["default_subjects"] == "ALL"


def test_create_read_update_replace_delete(app: Flask) -> None:
    tok = token(app, "rx-a")
    created = _create(
        app,
        tok,
        delivery={
            "method": PUSH,
            "endpoint_url": "https://rx-a.example/events",
            "authorization_header": "Bearer rx-secret",
        },
        description="okta",
        stream_id="chosen-by-me",  # transmitter-supplied: ignored on create
    )
    assert created.status_code == 201, created.json
    stream = created.json
    sid = stream["stream_id"]
    assert sid != "chosen-by-me"
    assert stream["iss"] == PUBLIC_URL and stream["aud"] == "https://rx-a.example"
    assert stream["events_delivered"] == [DCC, REVOKED]
    assert "authorization_header" not in stream["delivery"]
    c = _client(app)
    assert c.get(f"/ssf/streams?stream_id={sid}", headers=bearer(tok)).json == stream
    assert [s["stream_id"] for s in c.get("/ssf/streams", headers=bearer(tok)).json] == [sid]

    patched = c.patch(
        "/ssf/streams", json={"stream_id": sid, "events_requested": [DCC]}, headers=bearer(tok)
    )
    assert patched.status_code == 200 and patched.json["events_delivered"] == [DCC]
    assert patched.json["delivery"]["endpoint_url"] == "https://rx-a.example/events"
    assert patched.json["description"] == "okta"

    replaced = c.put(
        "/ssf/streams", json={"stream_id": sid, "events_requested": [REVOKED]}, headers=bearer(tok)
    )
    assert replaced.status_code == 200
    assert replaced.json["delivery"] == {
        "method": POLL,
        "endpoint_url": f"{PUBLIC_URL}/ssf/poll/{sid}",
    }
    assert "description" not in replaced.json

    mismatch = c.patch(
        "/ssf/streams", json={"stream_id": sid, "aud": "https://evil.example"}, headers=bearer(tok)
    )
    assert mismatch.status_code == 400 and "aud" in mismatch.json["error_description"]

    assert c.delete(f"/ssf/streams?stream_id={sid}", headers=bearer(tok)).status_code == 204
    assert c.get(f"/ssf/streams?stream_id={sid}", headers=bearer(tok)).status_code == 404
    with core_of(app).storage.unit_of_work() as uow:
        actions = [e.action for e in uow.audit.recent(f"ssf-stream:{sid}")]
        actors = {e.actor for e in uow.audit.recent(f"ssf-stream:{sid}")}
    assert actions == [
        "ssf.stream.deleted",
        "ssf.stream.replaced",
        "ssf.stream.updated",
        "ssf.stream.created",
    ]
    assert actors == {"ssf:rx-a"}


def test_status_subjects_and_verification(app: Flask) -> None:
    tok = token(app, "rx-a")
    sid = _create(app, tok).json["stream_id"]
    c = _client(app)
    assert c.get(f"/ssf/status?stream_id={sid}", headers=bearer(tok)).json == {
        "stream_id": sid,
        "status": "enabled",
    }
    paused = c.post(
        "/ssf/status",
        json={"stream_id": sid, "status": "paused", "reason": "maintenance"},
        headers=bearer(tok),
    )
    assert paused.status_code == 200 and paused.json["status"] == "paused"
    subject = {"format": "email", "email": "alice@example.com"}
    added = c.post(
        "/ssf/subjects/add", json={"stream_id": sid, "subject": subject}, headers=bearer(tok)
    )
    assert added.status_code == 200
    removed = c.post(
        "/ssf/subjects/remove", json={"stream_id": sid, "subject": subject}, headers=bearer(tok)
    )
    assert removed.status_code == 204
    bad = c.post(
        "/ssf/subjects/add",
        json={"stream_id": sid, "subject": {"format": "phone_number", "phone_number": "+1"}},
        headers=bearer(tok),
    )
    assert bad.status_code == 400
    assert (
        c.post(
            "/ssf/verify", json={"stream_id": sid, "state": "abc"}, headers=bearer(tok)
        ).status_code
        == 204
    )
    disabled = c.post(
        "/ssf/status", json={"stream_id": sid, "status": "disabled"}, headers=bearer(tok)
    )
    assert disabled.status_code == 200
    # disabled: what was held (stream-updated, verification) is dropped, verification refused
    with core_of(app).database.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(ssf_deliveries)).scalar_one() == 0
    assert c.post("/ssf/verify", json={"stream_id": sid}, headers=bearer(tok)).status_code == 409


def test_max_streams_per_receiver(app: Flask) -> None:
    tok = token(app, "rx-a")
    assert _create(app, tok).status_code == 201
    assert _create(app, tok).status_code == 201
    third = _create(app, tok)
    assert third.status_code == 409


# ---- attacks: each leaves everything as it was ---------------------------------------------


def _forged(
    app: Flask, claims_override: dict[str, Any], *, key: Any = None, alg: str = "RS256"
) -> str:
    real = token(app, "rx-a")
    claims = jwt.decode(real, options={"verify_signature": False})
    claims.update(claims_override)
    header = jwt.get_unverified_header(real)
    if alg == "none":

        def seg(obj: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        return f"{seg({'alg': 'none', 'typ': 'at+jwt'})}.{seg(claims)}."
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": header["kid"], "typ": "at+jwt"})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic cngtYTp4"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-a-jwt"},
    ],
    ids=["no-token", "basic", "empty-bearer", "garbage"],
)
def test_unauthenticated_requests_change_nothing(app: Flask, headers: dict[str, str]) -> None:
    tok = token(app, "rx-a")
    sid = _create(app, tok).json["stream_id"]
    before = _snapshot(app)
    c = _client(app)
    responses = [
        c.post("/ssf/streams", json={"events_requested": [DCC]}, headers=headers),
        c.get("/ssf/streams", headers=headers),
        c.delete(f"/ssf/streams?stream_id={sid}", headers=headers),
        c.post("/ssf/status", json={"stream_id": sid, "status": "disabled"}, headers=headers),
        c.post(f"/ssf/poll/{sid}", json={}, headers=headers),
    ]
    assert {r.status_code for r in responses} == {401}
    assert all(r.headers["WWW-Authenticate"].startswith("Bearer") for r in responses)
    assert _snapshot(app) == before


def test_forged_tokens_are_refused(app: Flask) -> None:
    before = _snapshot(app)
    c = _client(app)
    for forged in (
        _forged(app, {}, alg="none"),
        _forged(app, {}),  # right claims, wrong key
        _forged(app, {"scope": "ssf.manage"}, alg="HS256", key="x" * 32),
    ):
        response = c.post("/ssf/streams", json={"events_requested": [DCC]}, headers=bearer(forged))
        assert response.status_code == 401, response.json
    assert _snapshot(app)[:3] == before[:3]


def test_scope_and_receiver_checks(app: Flask) -> None:
    read_only = token(app, "rx-a", "ssf.read")
    response = _create(app, read_only)
    assert response.status_code == 403 and response.json["error"] == "insufficient_scope"
    # a client that is not a receiver cannot even get the scope
    refused = _client(app).post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "ssf.manage"},
        headers=__import__("tests.unit.posture_gateway.signals.conftest", fromlist=["basic"]).basic(
            "other-rp"
        ),
    )
    assert refused.status_code in (400, 401) and refused.json["error"] == "unauthorized_client"


def test_another_receivers_stream_is_invisible(app: Flask) -> None:
    a, b = token(app, "rx-a"), token(app, "rx-b")
    sid = _create(app, a).json["stream_id"]
    before = _snapshot(app)
    c = _client(app)
    responses = [
        c.get(f"/ssf/streams?stream_id={sid}", headers=bearer(b)),
        c.patch("/ssf/streams", json={"stream_id": sid, "events_requested": []}, headers=bearer(b)),
        c.put("/ssf/streams", json={"stream_id": sid}, headers=bearer(b)),
        c.delete(f"/ssf/streams?stream_id={sid}", headers=bearer(b)),
        c.get(f"/ssf/status?stream_id={sid}", headers=bearer(b)),
        c.post("/ssf/status", json={"stream_id": sid, "status": "disabled"}, headers=bearer(b)),
        c.post(
            "/ssf/subjects/add",
            json={"stream_id": sid, "subject": {"format": "opaque", "id": "x"}},
            headers=bearer(b),
        ),
        c.post("/ssf/verify", json={"stream_id": sid}, headers=bearer(b)),
        c.post(f"/ssf/poll/{sid}", json={}, headers=bearer(b)),
    ]
    assert [r.status_code for r in responses] == [404] * len(responses)
    assert c.get("/ssf/streams", headers=bearer(b)).json == []
    assert _snapshot(app) == before


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        json.dumps({"events_requested": "not-a-list"}),
        json.dumps({"events_requested": ["x"] * 33}),
        json.dumps({"description": "d" * 513}),
        json.dumps({"delivery": {"method": "urn:example:smtp"}}),
        json.dumps({"delivery": {"method": PUSH}}),
        json.dumps({"delivery": {"method": PUSH, "endpoint_url": "http://rx.example/e"}}),
        json.dumps({"delivery": {"method": PUSH, "endpoint_url": "https://u:p@rx.example/e"}}),
        json.dumps({"delivery": {"method": PUSH, "endpoint_url": "ftp://rx.example/e"}}),
        json.dumps(
            {
                "delivery": {
                    "method": PUSH,
                    "endpoint_url": "https://rx.example/e",
                    "authorization_header": "Bearer x\r\nX-Injected: 1",
                }
            }
        ),
        json.dumps({"events_requested": [DCC], "pad": "x" * 70_000}),
        "[" * 5000,
    ],
)
def test_malformed_or_invalid_bodies_change_nothing(app: Flask, body: str) -> None:
    tok = token(app, "rx-a")
    before = _snapshot(app)
    response = _client(app).post(
        "/ssf/streams", data=body, headers={**bearer(tok), "Content-Type": "application/json"}
    )
    assert response.status_code in (400, 413), response.json
    assert response.json["error"] == "invalid_request"
    assert _snapshot(app) == before


def test_http_endpoint_allowed_to_loopback_in_dev_mode_only(app: Flask) -> None:
    tok = token(app, "rx-a")
    loopback = _create(app, tok, delivery={"method": PUSH, "endpoint_url": "http://127.0.0.1:9/e"})
    assert loopback.status_code == 201  # the app runs with dev_mode: true
