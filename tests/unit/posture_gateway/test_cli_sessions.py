"""``posture sessions list|revoke`` and ``GET /admin/api/sessions`` on a real SQLite server
database: listing per user and per device, audited revocation with the admin actor."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from pydantic import SecretStr

from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.settings import Settings
from posture_gateway.sso.sql import SqlSessionStore
from posture_gateway.sso.store import NewSession

TOKEN = "a" * 40


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    built = create_app(Settings(data_dir=tmp_path, dev_mode=True, admin_token=SecretStr(TOKEN)))
    yield built
    built.extensions["posture"].core.close()


def _store(app: Flask) -> SqlSessionStore:
    settings = app.extensions["posture"].settings.sessions
    return SqlSessionStore(
        app.extensions["posture"].core.database,
        idle_ttl=settings.idle_ttl,
        absolute_ttl=settings.absolute_ttl,
    )


def _session(app: Flask, user: str, device: str) -> str:
    _, created = _store(app).create(
        NewSession(user, device, datetime.now(UTC), "urn:x", ("pwd", "hwk"), {"username": user})
    )
    return created.public_id


def _env(tmp_path: Path) -> dict[str, str]:
    return {"POSTURE_DEV_MODE": "true", "POSTURE_DATA_DIR": str(tmp_path), "COLUMNS": "200"}


def test_list_and_revoke_by_id_user_and_device(app: Flask, tmp_path: Path) -> None:
    a1 = _session(app, "alice", "dev-a1")
    _session(app, "alice", "dev-a2")
    b1 = _session(app, "bob", "dev-b1")
    runner = CliRunner()
    listed = runner.invoke(cli, ["sessions", "list", "--user", "alice"], env=_env(tmp_path))
    assert listed.exit_code == 0, listed.output
    assert "SSO sessions (2)" in listed.output and "live" in listed.output
    assert "dev-a1" in listed.output and "dev-b1" not in listed.output
    one = runner.invoke(
        cli, ["sessions", "revoke", "--id", a1, "--actor", "admin:carol"], env=_env(tmp_path)
    )
    assert one.exit_code == 0, one.output
    assert "revoked 1 session" in one.output
    by_device = runner.invoke(cli, ["sessions", "list", "--device", "dev-a1"], env=_env(tmp_path))
    assert "revoked" in by_device.output and "admin_revok" in by_device.output
    user = runner.invoke(cli, ["sessions", "revoke", "--user", "alice"], env=_env(tmp_path))
    assert user.exit_code == 0 and "revoked 1 live" in user.output  # dev-a2's
    assert _store(app).list(user_id="bob")[0].public_id == b1
    device = runner.invoke(cli, ["sessions", "revoke", "--device", "dev-b1"], env=_env(tmp_path))
    assert "revoked 1 live" in device.output
    assert not any(s.live(datetime.now(UTC)) for s in _store(app).list(user_id="bob"))
    with app.extensions["posture"].core.storage.unit_of_work() as uow:
        audited = uow.audit.recent("dev-a1")
    assert [(e.actor, e.action, e.detail["session_id"]) for e in audited] == [
        ("admin:carol", "sessions.revoked", a1)
    ]


def test_exactly_one_selector(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["list"], ["list", "--user", "a", "--device", "d"], ["revoke"]):
        result = runner.invoke(cli, ["sessions", *args], env=_env(tmp_path))
        assert result.exit_code == 2, result.output
        assert "exactly one of" in result.output


def test_admin_api_lists_per_user_and_device_behind_the_bearer_token(app: Flask) -> None:
    a1 = _session(app, "alice", "dev-a1")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/admin/api/sessions?user_id=alice").status_code == 401
    assert (
        client.get(
            "/admin/api/sessions?user_id=alice", headers={"Authorization": "Bearer " + "b" * 40}
        ).status_code
        == 401
    )
    body = client.get("/admin/api/sessions?user_id=alice", headers=auth).get_json()
    assert [s["id"] for s in body["sessions"]] == [a1]
    assert body["sessions"][0]["live"] is True and "cookie" not in body["sessions"][0]
    by_device = client.get("/admin/api/sessions?device_id=dev-a1", headers=auth).get_json()
    assert [s["user_id"] for s in by_device["sessions"]] == ["alice"]
    assert client.get("/admin/api/sessions", headers=auth).status_code == 400
    both = client.get("/admin/api/sessions?user_id=a&device_id=d", headers=auth)
    assert both.status_code == 400
    assert client.get("/admin/api/sessions?user_id=a%20b", headers=auth).status_code == 400
    doc = client.get("/openapi.json").get_json()
    assert "/admin/api/sessions" in doc["paths"]
