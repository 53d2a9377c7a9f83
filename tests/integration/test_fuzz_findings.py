"""Regression tests for what schemathesis found (tests/integration/test_fuzz_all_apis.py):
each was a 500 and is now a clear 4xx, with nothing changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from mdm_core.posture.model import Ownership, Platform
from posture_gateway.app import create_app
from posture_gateway.settings import Settings
from tests.helpers.enrolled import EnrolledDevice, enroll_device

PUBLIC_URL = "http://localhost"


@pytest.fixture
def app_and_device(tmp_path: Path) -> Iterator[tuple[Flask, EnrolledDevice]]:
    app = create_app(
        Settings.model_validate(
            {"data_dir": tmp_path / "data", "dev_mode": True, "public_url": PUBLIC_URL}
        )
    )
    core = app.extensions["posture"].core
    yield app, enroll_device(core, "u-a", ownership=Ownership.CORPORATE, platform=Platform.LINUX)
    core.close()


@pytest.mark.parametrize("command_id", ["é", "ß-1", "\u2603", "%C3%A9"])
def test_non_ascii_path_with_a_signed_proof_is_refused_not_a_500(
    app_and_device: tuple[Flask, EnrolledDevice], command_id: str
) -> None:
    """compare_digest raised TypeError on a non-ASCII htu: now compared as bytes."""
    app, device = app_and_device
    path = f"/mdm/v1/commands/{command_id}/result"
    body = json.dumps({"status": "acknowledged"}).encode()
    for url in (PUBLIC_URL + path, PUBLIC_URL + "/mdm/v1/commands/other/result"):
        response = app.test_client().post(
            path,
            data=body,
            headers={"Device-Proof": device.request_proof("POST", url, body)},
            content_type="application/json",
        )
        assert 400 <= response.status_code < 500, response.get_data(as_text=True)
        assert response.json["error"] in {"unknown_command", "wrong_target"}
    with app.extensions["posture"].core.storage.unit_of_work() as uow:
        assert uow.commands.for_device(device.device_id, limit=10) == []


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
@pytest.mark.parametrize("payload", [b"\xa0\xff:\x9b", b"\xc3(:x", b"no-colon", b"\xed\xa0\x80:s"])
def test_unreadable_basic_credential_is_invalid_client_not_a_500(
    app_and_device: tuple[Flask, EnrolledDevice], endpoint: str, payload: bytes
) -> None:
    """authlib decoded the Basic payload as UTF-8 and raised: now 401 invalid_client."""
    import base64

    app, _ = app_and_device
    header = "Basic " + base64.b64encode(payload).decode()
    response = app.test_client().post(
        endpoint,
        data={"grant_type": "client_credentials", "token": "t"},
        headers={"Authorization": header},
    )
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
