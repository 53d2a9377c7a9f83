"""``posture enroll token|register-serial|revoke|release`` against a real (SQLite) server
database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mdm_core.device.enrollment import EnrollmentRequest
from mdm_core.domain.errors import InvalidEnrollmentSecret
from mdm_core.domain.model import DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.settings import Settings
from tests.helpers.device_keys import DeviceKey


def _env(tmp_path: Path) -> dict[str, str]:
    return {"POSTURE_DEV_MODE": "true", "POSTURE_DATA_DIR": str(tmp_path)}


def test_token_is_printed_once_and_enrolls(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["enroll", "token", "--user", "alice", "--ownership", "corporate", "--ttl", "2h"],
        env=_env(tmp_path),
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert len(token) >= 43 and "alice" in result.output
    app = create_app(Settings(data_dir=tmp_path, dev_mode=True))
    core = app.extensions["posture"].core
    try:
        enrolled = core.enrollment.enroll(
            EnrollmentRequest(
                csr_pem=DeviceKey.generate().csr_pem(),
                platform=Platform.IOS,
                ownership=Ownership.CORPORATE,
                token=token,
            )
        )
        assert enrolled.device.user_id == "alice"
        revoked = CliRunner().invoke(
            cli, ["enroll", "revoke", enrolled.device.id, "--reason", "lost"], env=_env(tmp_path)
        )
        assert revoked.exit_code == 0, revoked.output
        assert "retired" in revoked.output
    finally:
        core.close()


def test_register_serial_prints_its_secret_once_and_it_enrolls(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["enroll", "register-serial", "C02XYZ", "--platform", "macos", "--user", "bob"],
        env=_env(tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert "C02XYZ" in result.output and "bob" in result.output
    secret = result.output.strip().splitlines()[-1]
    assert len(secret) >= 43
    app = create_app(Settings(data_dir=tmp_path, dev_mode=True))
    core = app.extensions["posture"].core
    try:
        request = EnrollmentRequest(
            csr_pem=DeviceKey.generate().csr_pem(),
            platform=Platform.MACOS,
            ownership=Ownership.CORPORATE,
            serial_number="C02XYZ",
        )
        with pytest.raises(InvalidEnrollmentSecret):
            core.enrollment.enroll(request)
        enrolled = core.enrollment.enroll(replace(request, enrollment_secret=secret))
        assert enrolled.device.user_id == "bob"
    finally:
        core.close()


def test_release_a_quarantined_device_is_audited_with_who(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, dev_mode=True))
    core = app.extensions["posture"].core
    try:
        token = core.enrollment.create_token(
            "alice", Ownership.CORPORATE, None, timedelta(hours=1), "admin:t"
        )
        device = core.enrollment.enroll(
            EnrollmentRequest(
                csr_pem=DeviceKey.generate().csr_pem(),
                platform=Platform.IOS,
                ownership=Ownership.CORPORATE,
                token=token,
            )
        ).device
        runner = CliRunner()
        not_quarantined = runner.invoke(
            cli, ["enroll", "release", device.id, "--reason", "x"], env=_env(tmp_path)
        )
        assert not_quarantined.exit_code != 0 and "conflict" in not_quarantined.output
        with core.storage.unit_of_work() as uow:
            uow.devices.update_status(
                device.id, DeviceStatus.QUARANTINED, reason="jailbroken", at=datetime.now(UTC)
            )
        released = runner.invoke(
            cli,
            ["enroll", "release", device.id, "--reason", "re-imaged", "--actor", "admin:carol"],
            env=_env(tmp_path),
        )
        assert released.exit_code == 0, released.output
        assert "pending_verification" in released.output
        with core.storage.unit_of_work() as uow:
            current = uow.devices.get(device.id)
            (entry,) = [e for e in uow.audit.recent(device.id) if e.action == "device.release"]
        assert current is not None and current.status is DeviceStatus.PENDING_VERIFICATION
        assert entry.actor == "admin:carol"
    finally:
        core.close()


def test_refusals_exit_non_zero(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_ttl = runner.invoke(
        cli,
        ["enroll", "token", "--user", "alice", "--ownership", "byod", "--ttl", "forever"],
        env=_env(tmp_path),
    )
    assert bad_ttl.exit_code != 0 and "unit" in bad_ttl.output
    too_long = runner.invoke(
        cli,
        ["enroll", "token", "--user", "alice", "--ownership", "byod", "--ttl", "365d"],
        env=_env(tmp_path),
    )
    assert too_long.exit_code != 0 and "bad_request" in too_long.output
    bad_ownership = runner.invoke(
        cli, ["enroll", "token", "--user", "a", "--ownership", "x"], env=_env(tmp_path)
    )
    assert bad_ownership.exit_code != 0
    unknown = runner.invoke(
        cli, ["enroll", "revoke", "no-such-device", "--reason", "x"], env=_env(tmp_path)
    )
    assert unknown.exit_code != 0 and "not_found" in unknown.output
    bad_serial = runner.invoke(
        cli, ["enroll", "register-serial", "bad serial!", "--platform", "ios"], env=_env(tmp_path)
    )
    assert bad_serial.exit_code != 0 and "bad_request" in bad_serial.output
