# ruff: noqa: F811 - the fixtures imported from test_refresh_revocation are parameters here
"""``posture_noncompliant_devices_with_live_credentials`` on SQLite and PostgreSQL: held at 0
through every degrading event, and above 0 when a revocation is deliberately bypassed (so
this test can fail)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from pydantic import SecretStr

from mdm_core.domain.model import DeviceStatus
from mdm_core.simulator.reports import DeviceTraits
from mdm_core.storage.compliance import ComplianceRecord, ComplianceState
from posture_gateway.observability.live_credentials import (
    GAUGE,
    noncompliant_devices_with_live_credentials,
)
from tests.integration.oidc.test_refresh_revocation import (  # noqa: F401 - fixtures
    USER,
    Session,
    _core,
    app,
    ios,
)

METRICS_TOKEN = "m" * 40


def gauge(app: Flask) -> int:
    return noncompliant_devices_with_live_credentials(_core(app).database)


def scraped(app: Flask) -> float:
    """The value as Prometheus reads it from ``/metrics`` of another app on the same store."""
    from posture_gateway.app import create_app

    settings = app.extensions["posture"].settings
    other = create_app(
        settings.model_copy(
            update={
                "metrics": settings.metrics.model_copy(update={"token": SecretStr(METRICS_TOKEN)})
            }
        )
    )
    try:
        response = other.test_client().get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert response.status_code == 200
        text = response.get_data(as_text=True)
    finally:
        other.extensions["posture"].core.close()
    match = re.search(rf"^{GAUGE} (\S+)$", text, re.MULTILINE)
    assert match, text[-2000:]
    return float(match.group(1))


@pytest.mark.parametrize("event", ["quarantine", "retire", "wipe", "re_enroll"])
def test_zero_through_every_degrading_event(ios: Session, app: Flask, event: str) -> None:
    assert gauge(app) == 0  # healthy device with a session and tokens
    core = _core(app)
    now = datetime.now(UTC)
    if event == "quarantine":
        ios.check_in(DeviceTraits(jailbroken=True))
    elif event == "retire":
        core.enrollment.revoke_device(ios.device_id, actor="admin:test", reason="lost")
    else:
        from mdm_core.domain.device_lifecycle import change_status, end_device_access

        with core.storage.unit_of_work() as uow:
            if event == "wipe":
                change_status(uow, ios.device_id, DeviceStatus.WIPED, reason="t", at=now)
            else:  # what enrollment does on a re-enrollment
                change_status(
                    uow, ios.device_id, DeviceStatus.PENDING_VERIFICATION, reason="t", at=now
                )
                end_device_access(uow, ios.device_id, reason="re_enrolled", at=now)
    assert gauge(app) == 0
    assert scraped(app) == 0


def test_posture_block_without_quarantine_is_zero_too(ios: Session, app: Flask) -> None:
    """The compliance hook revokes when the outcome reaches block (grace past): driven here
    through the lifecycle call it makes, with the stored verdict it records."""
    from mdm_core.domain.device_lifecycle import end_device_access

    core = _core(app)
    now = datetime.now(UTC)
    with core.storage.unit_of_work() as uow:
        uow.compliance.put_state(_blocked(ios.device_id, now))
        end_device_access(uow, ios.device_id, reason="posture_block", at=now)
    assert gauge(app) == 0


def _blocked(device_id: str, now: datetime) -> ComplianceRecord:
    return ComplianceRecord(
        device_id=device_id,
        state=ComplianceState.NONCOMPLIANT,
        outcome="block",
        reasons=[],
        policy_ids=["p"],
        evaluated_at=now,
    )


def test_above_zero_when_the_revocation_is_bypassed(ios: Session, app: Flask) -> None:
    core = _core(app)
    now = datetime.now(UTC)
    with core.storage.unit_of_work() as uow:  # a status change that forgot to revoke
        uow.devices.update_status(ios.device_id, DeviceStatus.QUARANTINED, reason="t", at=now)
    assert gauge(app) == 1
    assert scraped(app) == 1


def test_above_zero_when_a_block_verdict_is_stored_without_revoking(
    ios: Session, app: Flask
) -> None:
    with _core(app).storage.unit_of_work() as uow:
        uow.compliance.put_state(_blocked(ios.device_id, datetime.now(UTC)))
    assert gauge(app) == 1


def test_expired_credentials_do_not_count(ios: Session, app: Flask) -> None:
    core = _core(app)
    now = datetime.now(UTC)
    with core.storage.unit_of_work() as uow:
        uow.devices.update_status(ios.device_id, DeviceStatus.QUARANTINED, reason="t", at=now)
    later = now + timedelta(days=2)  # past the session, refresh and access lifetimes
    assert noncompliant_devices_with_live_credentials(core.database, later) == 0
    assert USER
