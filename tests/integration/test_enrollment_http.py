"""Enrollment over HTTP (Flask test client), on SQLite and PostgreSQL: enroll, renew with a
signed proof, the CA certificate, and bad input that changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mdm_core.api.enrollment_views import bp
from mdm_core.domain.model import DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql import tables
from mdm_core.storage.sql.database import Database
from tests.helpers.device_keys import DeviceKey
from tests.helpers.enrolled import PUBLIC_URL, make_core

RENEW_URL = PUBLIC_URL + "/mdm/v1/renew"


@pytest.fixture
def core(database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    built = make_core(database, tmp_path)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(core: MdmCore) -> FlaskClient:
    app = Flask("enrollment-test")
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
    app.extensions["posture"] = SimpleNamespace(core=core)
    app.register_blueprint(bp)
    return app.test_client()


def _token(core: MdmCore, ownership: Ownership = Ownership.CORPORATE, **kw: Any) -> str:
    return core.enrollment.create_token(
        kw.get("user", "alice"), ownership, kw.get("platform"), timedelta(hours=1), "admin:t"
    )


def _snapshot(core: MdmCore) -> dict[str, int]:
    with core.database.transaction() as conn:
        counts = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (
                tables.devices,
                tables.certificates,
                tables.outbox,
                tables.used_proofs,
                tables.registered_serials,
            )
        }
        counts["used_tokens"] = conn.execute(
            select(func.count())
            .select_from(tables.enrollment_tokens)
            .where(tables.enrollment_tokens.c.used_at.is_not(None))
        ).scalar_one()
        counts["revoked"] = conn.execute(
            select(func.count())
            .select_from(tables.certificates)
            .where(tables.certificates.c.revoked_at.is_not(None))
        ).scalar_one()
    return counts


def _enroll(client: FlaskClient, body: dict[str, Any]) -> Any:
    return client.post("/mdm/v1/enroll", json=body)


def _enrolled(core: MdmCore, client: FlaskClient) -> tuple[str, DeviceKey, dict[str, Any]]:
    key = DeviceKey.generate()
    resp = _enroll(
        client,
        {"csr": key.csr_pem(), "platform": "ios", "ownership": "corporate", "token": _token(core)},
    )
    assert resp.status_code == 201, resp.get_json()
    data = resp.get_json()
    return data["device_id"], key, data


def test_enroll_returns_identity(core: MdmCore, client: FlaskClient) -> None:
    device_id, key, data = _enrolled(core, client)
    assert set(data) == {
        "device_id",
        "certificate",
        "ca_certificate",
        "checkin_url",
        "status",
        "re_enrolled",
    }
    cert = x509.load_pem_x509_certificate(data["certificate"].encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(data["ca_certificate"].encode()))
    assert cert.public_key() == key.private_key.public_key()
    assert data["checkin_url"] == PUBLIC_URL + "/mdm/v1/checkin"
    assert (data["status"], data["re_enrolled"]) == ("active", False)


def test_byod_enrollment_with_notice(core: MdmCore, client: FlaskClient) -> None:
    notice = core.enrollment.required_notice(Ownership.BYOD)
    resp = _enroll(
        client,
        {
            "csr": DeviceKey.generate().csr_pem(),
            "platform": "android",
            "ownership": "byod",
            "token": _token(core, Ownership.BYOD),
            "privacy_notice_accepted": notice,
        },
    )
    assert resp.status_code == 201, resp.get_json()


def test_enroll_by_registered_serial(core: MdmCore, client: FlaskClient) -> None:
    secret = core.enrollment.register_serial(
        "C02ABC", Platform.MACOS, "bob", "admin:t"
    ).enrollment_secret
    body = {
        "csr": DeviceKey.generate().csr_pem(),
        "platform": "macos",
        "ownership": "corporate",
        "enrollment_secret": secret,
    }
    first = _enroll(client, {**body, "serial_number": "C02ABC"})
    assert first.status_code == 201
    again = _enroll(
        client, {**body, "csr": DeviceKey.generate().csr_pem(), "serial_number": "C02ABC"}
    )
    assert again.status_code == 201
    assert again.get_json()["device_id"] == first.get_json()["device_id"]
    assert again.get_json()["re_enrolled"] is True


def test_ca_certificate(core: MdmCore, client: FlaskClient) -> None:
    resp = client.get("/mdm/v1/ca")
    assert resp.status_code == 200 and resp.mimetype == "application/x-pem-file"
    assert resp.get_data(as_text=True) == core.ca.certificate_pem


def _bad_enroll_cases() -> list[tuple[str, Any, int, str]]:
    csr = DeviceKey.generate().csr_pem()
    ok = {"csr": csr, "platform": "ios", "ownership": "corporate", "token": "TOKEN"}
    return [
        ("not json", b"csr=1", 415, "unsupported_media_type"),
        ("malformed", b'{"csr": ', 400, "invalid_json"),
        ("array", [ok], 400, "bad_request"),
        ("missing csr", {k: v for k, v in ok.items() if k != "csr"}, 400, "bad_request"),
        ("csr not str", {**ok, "csr": 42}, 400, "bad_request"),
        ("empty csr", {**ok, "csr": ""}, 400, "bad_request"),
        ("bad platform", {**ok, "platform": "palmos"}, 400, "bad_request"),
        (
            "missing ownership",
            {k: v for k, v in ok.items() if k != "ownership"},
            400,
            "bad_request",
        ),
        ("token not str", {**ok, "token": ["x"]}, 400, "bad_request"),
        ("unknown field", {**ok, "admin": True}, 400, "bad_request"),
        ("bad csr", {**ok, "csr": "-----BEGIN CERTIFICATE REQUEST-----"}, 400, "bad_csr"),
        ("unknown token", {**ok, "token": "nope"}, 401, "invalid_token"),
        ("no credential", {k: v for k, v in ok.items() if k != "token"}, 401, "invalid_token"),
        (
            "unregistered serial",
            {**{k: v for k, v in ok.items() if k != "token"}, "serial_number": "X1"},
            403,
            "unregistered_serial",
        ),
        (
            "byod without notice",
            {**ok, "ownership": "byod", "token": "BYOD"},
            400,
            "notice_not_accepted",
        ),
        (
            "wrong ownership",
            {**ok, "ownership": "byod", "token": "TOKEN", "privacy_notice_accepted": "NOTICE"},
            403,
            "ownership_mismatch",
        ),
        ("bad device id", {**ok, "device_id": "../../etc"}, 400, "bad_request"),
        ("oversized", {**ok, "csr": "A" * 40_000}, 413, "payload_too_large"),
    ]


@pytest.mark.parametrize(
    ("name", "body", "status", "code"), _bad_enroll_cases(), ids=[c[0] for c in _bad_enroll_cases()]
)
def test_bad_enroll_input_changes_nothing(
    core: MdmCore, client: FlaskClient, name: str, body: Any, status: int, code: str
) -> None:
    token = _token(core)
    byod_token = _token(core, Ownership.BYOD)
    notice = core.enrollment.required_notice(Ownership.BYOD) or ""
    before = _snapshot(core)
    if isinstance(body, bytes):
        ctype = "application/json" if name != "not json" else "application/x-www-form-urlencoded"
        resp = client.post("/mdm/v1/enroll", data=body, content_type=ctype)
    else:
        raw = json.dumps(body).replace("TOKEN", token).replace("BYOD", byod_token)
        raw = raw.replace("NOTICE", notice)
        resp = client.post("/mdm/v1/enroll", data=raw, content_type="application/json")
    assert resp.status_code == status, resp.get_json()
    assert resp.get_json()["error"] == code
    assert resp.get_json()["reason"]
    assert _snapshot(core) == before


def test_used_and_expired_tokens_over_http(core: MdmCore, client: FlaskClient) -> None:
    token = _token(core)
    body = {"csr": DeviceKey.generate().csr_pem(), "platform": "ios", "ownership": "corporate"}
    assert _enroll(client, {**body, "token": token}).status_code == 201
    before = _snapshot(core)
    again = _enroll(client, {**body, "token": token})
    assert (again.status_code, again.get_json()["error"]) == (401, "token_used")
    expired = _token(core)
    with core.database.transaction() as conn:
        conn.execute(
            tables.enrollment_tokens.update()
            .where(tables.enrollment_tokens.c.used_at.is_(None))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    resp = _enroll(client, {**body, "token": expired})
    assert (resp.status_code, resp.get_json()["error"]) == (401, "token_expired")
    assert _snapshot(core) == before


# --- renewal -----------------------------------------------------------------------------------


def _renew(client: FlaskClient, proof: str | None, body: bytes) -> Any:
    headers = {"Device-Proof": proof} if proof else {}
    return client.post("/mdm/v1/renew", data=body, content_type="application/json", headers=headers)


def test_renew_with_a_signed_proof(core: MdmCore, client: FlaskClient) -> None:
    device_id, key, data = _enrolled(core, client)
    new_key = DeviceKey.generate()
    body = json.dumps({"csr": new_key.csr_pem()}).encode()
    resp = _renew(client, key.request_proof(device_id, "POST", RENEW_URL, body), body)
    assert resp.status_code == 200, resp.get_json()
    renewed = resp.get_json()
    assert renewed["device_id"] == device_id and renewed["certificate"] != data["certificate"]
    old_serial = format(
        x509.load_pem_x509_certificate(data["certificate"].encode()).serial_number, "x"
    )
    with core.storage.unit_of_work() as uow:
        assert uow.certificates.is_revoked(old_serial)
    # the old key is no longer the device's key; the new one is
    body2 = json.dumps({"csr": DeviceKey.generate().csr_pem()}).encode()
    old = _renew(client, key.request_proof(device_id, "POST", RENEW_URL, body2), body2)
    assert (old.status_code, old.get_json()["error"]) == (401, "bad_signature")
    new = _renew(client, new_key.request_proof(device_id, "POST", RENEW_URL, body2), body2)
    assert new.status_code == 200


def test_renew_refusals_change_nothing(core: MdmCore, client: FlaskClient) -> None:
    device_id, key, _ = _enrolled(core, client)
    body = json.dumps({"csr": DeviceKey.generate().csr_pem()}).encode()
    before = _snapshot(core)
    missing = _renew(client, None, body)
    assert (missing.status_code, missing.get_json()["error"]) == (401, "malformed_proof")
    assert missing.headers["WWW-Authenticate"].startswith("DeviceProof")
    tampered = _renew(client, key.request_proof(device_id, "POST", RENEW_URL, b"{}"), body)
    assert (tampered.status_code, tampered.get_json()["error"]) == (401, "body_mismatch")
    for bad in (b'{"csr": 1}', b'{"csr": "x", "more": 1}', b"[]", b'{"csr": "garbage"}'):
        resp = _renew(client, key.request_proof(device_id, "POST", RENEW_URL, bad), bad)
        assert resp.status_code == 400, (bad, resp.get_json())
    with core.database.transaction() as conn:
        refusals = conn.execute(
            select(func.count())
            .select_from(tables.audit_log)
            .where(tables.audit_log.c.outcome == "refused")
        ).scalar_one()
    assert refusals == 1  # the body mismatch (the missing proof names no device)
    # nothing changed (no jti consumed, nothing issued or revoked) except the one
    # device.proof_refused event the body-mismatch refusal of a known device publishes
    assert _snapshot(core) == {**before, "outbox": before["outbox"] + 1}


def test_retired_device_cannot_renew(core: MdmCore, client: FlaskClient) -> None:
    device_id, key, _ = _enrolled(core, client)
    with core.storage.unit_of_work() as uow:
        uow.devices.update_status(
            device_id, DeviceStatus.RETIRED, reason="test", at=datetime.now(UTC)
        )
    body = json.dumps({"csr": DeviceKey.generate().csr_pem()}).encode()
    resp = _renew(client, key.request_proof(device_id, "POST", RENEW_URL, body), body)
    assert (resp.status_code, resp.get_json()["error"]) == (403, "device_not_active")


def test_registered_in_the_gateway_app(tmp_path: Path) -> None:
    from posture_gateway.app import create_app
    from posture_gateway.settings import Settings

    app = create_app(Settings(data_dir=tmp_path, dev_mode=True))
    try:
        client = app.test_client()
        assert client.get("/mdm/v1/ca").status_code == 200
        resp = client.post("/mdm/v1/enroll", json={"csr": "x"})
        assert resp.status_code == 400 and resp.get_json()["error"] == "bad_request"
    finally:
        app.extensions["posture"].core.close()
