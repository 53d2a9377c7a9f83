"""``posture policy check|what-if`` and ``GET /admin/api/what-if`` on a real SQLite server DB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from mdm_core.access.whatif import what_if
from mdm_core.domain.model import DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from posture_gateway.access.device_gate import evaluator
from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.settings import Settings
from tests.unit.mdm_core.policy.factories import device, healthy_posture

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "t" * 40


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "POSTURE_DEV_MODE": "true",
        "POSTURE_DATA_DIR": str(tmp_path),
        "POSTURE_POLICY_DIR": str(ROOT / "policies"),
    }


def _seed(app: Flask) -> None:
    core = app.extensions["posture"].core
    now = datetime.now(UTC)
    with core.storage.unit_of_work() as uow:
        uow.directory_users.upsert(DirectoryUser("alice", "alice", True, "local", now))
        uow.directory_users.upsert(DirectoryUser("bob", "bob", True, "local", now))
        uow.directory_groups.upsert(DirectoryGroup("g-staff", "staff", "local", now))
        uow.memberships.add(Membership("g-staff", "alice", MemberKind.USER))
        for dev_id, owner, jailbroken in (("dev-a", "alice", False), ("dev-j", "alice", True)):
            uow.devices.create(
                device(id=dev_id, user_id=owner, platform=Platform.IOS), public_key=b"\x00"
            )
            uow.posture.record(
                dev_id,
                healthy_posture(collected_at=now - timedelta(minutes=1), jailbroken=jailbroken),
                received_at=now - timedelta(minutes=1),
                history_length=5,
            )


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        Settings(
            data_dir=tmp_path,
            dev_mode=True,
            policy_dir=ROOT / "policies",
            admin_token=TOKEN,  # type: ignore[arg-type]
        )
    )
    _seed(app)
    try:
        yield app
    finally:
        app.extensions["posture"].core.close()


def test_what_if_function_explains_without_writing(app: Flask) -> None:
    core = app.extensions["posture"].core
    now = datetime.now(UTC)
    result = what_if(
        evaluator(app),
        user_id="alice",
        device_id="dev-a",
        app="crm-web",
        now=now,
    )
    assert result["decision"]["outcome"] == "allow"
    assert result["input"]["user"]["groups"] == ["staff"]
    assert result["input"]["device"]["status"] == "active"
    jail = what_if(
        evaluator(app),
        user_id="alice",
        device_id="dev-j",
        app=None,
        now=now,
    )
    assert jail["decision"]["outcome"] == "block" and jail["decision"]["quarantine"] is True
    with core.storage.unit_of_work() as uow:  # what-if changed nothing
        dev = uow.devices.get("dev-j")
        assert dev is not None and dev.status is DeviceStatus.ACTIVE
        assert uow.compliance.get_state("dev-j") is None
        assert uow.outbox.fetch_unpublished(10) == []
        assert uow.audit.recent("dev-j") == [] and uow.audit.recent("dev-a") == []


def _get(app: Flask, query: str, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return app.test_client().get("/admin/api/what-if" + query, headers=headers)


def test_admin_api_answers_with_the_decision(app: Flask) -> None:
    resp = _get(app, "?user=alice&device=dev-a&app=crm-web")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["decision"]["outcome"] == "allow"
    assert resp.headers["Cache-Control"] == "no-store"
    other = _get(app, "?user=bob&device=dev-a").get_json()["decision"]
    assert other["outcome"] == "block"
    assert "device_not_owned" in {r["code"] for r in other["reasons"]}
    unknown = _get(app, "?user=alice&device=nope").get_json()["decision"]
    assert [r["code"] for r in unknown["reasons"]] == ["device_unknown"]
    status = app.test_client().get(
        "/admin/api/policies", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status.get_json()["healthy"] is True


@pytest.mark.parametrize(
    "token,status,code",
    [(None, 401, "unauthorized"), ("wrong" * 8, 401, "unauthorized"), ("", 401, "unauthorized")],
)
def test_admin_api_refuses_without_the_token(app: Flask, token, status, code) -> None:
    resp = _get(app, "?user=alice&device=dev-a", token=token)
    assert resp.status_code == status
    assert resp.get_json()["error"] == code
    assert "Bearer" in resp.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?user=alice",
        "?device=dev-a",
        "?user=a%20b&device=dev-a",
        "?user=" + "x" * 300 + "&device=d",
        "?user=alice&device=dev-a&app=%00",
    ],
)
def test_admin_api_refuses_bad_input(app: Flask, query: str) -> None:
    resp = _get(app, query)
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "bad_request"


@pytest.mark.parametrize("configured", [None, "short-token"])
def test_admin_api_is_disabled_without_a_strong_token(tmp_path: Path, configured) -> None:
    app = create_app(
        Settings(
            data_dir=tmp_path,
            dev_mode=True,
            policy_dir=ROOT / "policies",
            admin_token=configured,  # type: ignore[arg-type]
        )
    )
    try:
        resp = app.test_client().get(
            "/admin/api/what-if?user=a&device=b", headers={"Authorization": "Bearer short-token"}
        )
        assert resp.status_code == 403
        assert resp.get_json()["error"] == "admin_api_disabled"
    finally:
        app.extensions["posture"].core.close()


def test_cli_what_if_prints_the_decision(app: Flask, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["policy", "what-if", "--user", "alice", "--device", "dev-j"],
        env={**_env(tmp_path), "COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "BLOCK" in result.output
    assert "baseline-critical/not-jailbroken" in result.output
    assert "quarantined" in result.output
    assert "Restore the official operating system" in result.output  # remediation shown
    as_json = runner.invoke(
        cli,
        ["policy", "what-if", "--user", "alice", "--device", "dev-a", "--app", "crm-web", "--json"],
        env=_env(tmp_path),
    )
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["decision"]["outcome"] == "allow"


def test_cli_check_valid_and_invalid(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["policy", "check", str(ROOT / "policies")], env=_env(tmp_path))
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "a.yaml").write_text(
        "kind: CompliancePolicy\nid: p\nassign: {}\nrules:\n"
        "  - {id: a, severity: critical, firewall: required, bogus: 1, remediation: x}\n"
    )
    bad = runner.invoke(cli, ["policy", "check", str(bad_dir)], env=_env(tmp_path))
    assert bad.exit_code == 1
    assert f"{bad_dir / 'a.yaml'}:5: rules[0]: unknown key 'bogus'" in bad.output


def test_cli_check_against_the_directory_mirror(app: Flask, tmp_path: Path) -> None:
    policies = tmp_path / "pol"
    policies.mkdir()
    (policies / "a.yaml").write_text(
        "kind: CompliancePolicy\nid: p\nassign: {groups: [staff, finanse]}\nrules:\n"
        "  - {id: a, severity: critical, storage_encrypted: required, remediation: x}\n"
    )
    runner = CliRunner()
    plain = runner.invoke(cli, ["policy", "check", str(policies)], env=_env(tmp_path))
    assert plain.exit_code == 0, plain.output
    mirrored = runner.invoke(
        cli, ["policy", "check", "--directory-groups", str(policies)], env=_env(tmp_path)
    )
    assert mirrored.exit_code == 1
    assert "unknown group 'finanse'" in mirrored.output and "'staff'" not in mirrored.output
    assert Ownership.BYOD  # (import kept for symmetry with other tests)
