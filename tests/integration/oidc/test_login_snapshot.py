"""The signed posture snapshot a login proof carries, as the shipped agent sends it.

``posture agent serve-loopback`` attaches ``{"format": "agent", "report": {...}}`` (the shape of
a check-in body) to every login proof. The gate must read it with the check-in's own code path
(normalise by format, privacy filter) and merge it over the stored posture: the snapshot's
evidence wins, a field it does not report keeps the stored value (and the stored report's
age), and a snapshot that cannot be read is refused (the stored posture decides).

Regression (issue 7, finding 1): the gate handed the whole envelope to the normaliser, every
field came out empty, and that empty posture replaced the stored one: a healthy device was
blocked with "The device agent is missing" and "Storage encryption is off or not reported".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from flask import Flask

from mdm_core.access.evaluate import ChosenPosture
from mdm_core.access.state import AccessState
from mdm_core.agent.agent import agent_report
from mdm_core.agent.collector_linux import AGENT_VERSION, LinuxPosture
from mdm_core.posture.model import Ownership, Platform, Posture
from mdm_core.simulator.reports import DeviceTraits
from posture_gateway.access.device_gate import evaluator as access_evaluator
from posture_gateway.oidc.server import OIDCProvider
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.integration.oidc.conftest import Browser
from tests.integration.oidc.test_login_with_device import _add_user, _check_in, _core, _finish

__all__: list[str] = []


def _linux(*, encrypted: bool | None = True, at: datetime | None = None) -> LinuxPosture:
    """What the reference collector establishes on a healthy, headless Linux laptop."""
    return LinuxPosture(
        collected_at=at or datetime.now(UTC),
        os_name="debian",
        os_version="12",
        os_build="6.1.0-27-amd64",
        kernel="6.1.0-27-amd64",
        hostname="laptop-7",
        model=None,
        serial_number=None,
        storage_encrypted=encrypted,
        firewall_enabled=None,
        screen_lock_enabled=None,
        screen_lock_timeout_s=None,
        secure_boot=False,
        agent_version=AGENT_VERSION,
    )


def _envelope(posture: LinuxPosture) -> dict[str, Any]:
    """Exactly what ``posture agent serve-loopback`` signs into the proof's ``posture`` claim."""
    return {"format": "agent", "report": agent_report(posture)}


def _device(app: Flask) -> EnrolledDevice:
    dev = enroll_device(
        _core(app), "u-alice", ownership=Ownership.CORPORATE, platform=Platform.LINUX
    )
    _check_in(app, dev, "linux", DeviceTraits())  # healthy: encrypted, agent present
    return dev


def _login(app: Flask, provider: OIDCProvider, dev: EnrolledDevice, snapshot: Any) -> Any:
    browser = Browser(app.test_client())
    assert browser.authorize().status_code == 303
    assert browser.login().status_code == 303
    csrf, nonce = browser.device_page()
    proof = dev.login_proof(audience=provider.issuer.issuer, nonce=nonce, posture=snapshot)
    response = browser.client.post(
        "/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": proof}
    )
    return browser, response


def _decision(app: Flask, dev: EnrolledDevice) -> Any:
    with _core(app).storage.unit_of_work() as uow:
        found = [e for e in uow.audit.recent(dev.device_id) if e.action == "access.decision"]
    assert found
    return found[0]


def _used(chosen: ChosenPosture) -> Posture | None:
    """The posture a snapshot made, when the snapshot was used."""
    return chosen.posture if chosen.snapshot == "used" else None


def _stored(app: Flask, dev: EnrolledDevice) -> Any:
    with _core(app).storage.unit_of_work() as uow:
        return uow.posture.latest(dev.device_id)


def test_healthy_device_with_the_agents_snapshot_signs_in(
    app: Flask, provider: OIDCProvider
) -> None:
    _add_user(app)
    dev = _device(app)
    browser, response = _login(app, provider, dev, _envelope(_linux()))
    decision = _decision(app, dev)
    assert decision.outcome in {"allow", "warn"}, decision.detail
    assert "agent_missing" not in str(decision.detail["reasons"])
    code = _finish(browser, response)
    tokens = browser.exchange(code).get_json()
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["device_id"] == dev.device_id
    assert claims["posture_outcome"] in {"allow", "warn"}


def test_snapshot_evidence_wins_over_the_stored_posture(app: Flask, provider: OIDCProvider) -> None:
    _add_user(app)
    dev = _device(app)
    before = _stored(app, dev)
    _, response = _login(app, provider, dev, _envelope(_linux(encrypted=False)))
    assert "Location" not in response.headers  # no code
    decision = _decision(app, dev)
    assert decision.outcome == "block"
    assert "baseline-critical/storage-encrypted" in decision.detail["rules"]
    # The snapshot decides this login; it is not stored as a check-in.
    assert _stored(app, dev).seq == before.seq


def test_a_snapshot_without_a_field_keeps_the_stored_evidence(
    app: Flask, provider: OIDCProvider
) -> None:
    """A snapshot that omits encryption (collector could not tell) does not erase the stored
    ``storage_encrypted: true`` and the stored ``agent_present``."""
    _add_user(app)
    dev = _device(app)
    report = agent_report(_linux(encrypted=None))
    report.pop("agent_present")
    browser, response = _login(app, provider, dev, {"format": "agent", "report": report})
    decision = _decision(app, dev)
    assert decision.outcome in {"allow", "warn"}, decision.detail
    _finish(browser, response)


def test_carried_fields_keep_their_provenance_and_age(app: Flask) -> None:
    """Fields carried from the stored report make the posture as old as that report."""
    _add_user(app)
    dev = _device(app)
    stored = _stored(app, dev)
    evaluator = access_evaluator(app)
    with _core(app).storage.unit_of_work() as uow:
        record = uow.devices.get(dev.device_id)
    now = datetime.now(UTC) + timedelta(seconds=30)
    # The agent reports again everything the check-in established.
    dumped = stored.posture.model_dump(mode="json")
    report = {k: v for k, v in dumped.items() if v not in (None, [])}
    report["collected_at"] = now.isoformat()
    envelope = {"format": "agent", "report": report}
    full = _used(evaluator.choose_posture(AccessState(None, record, stored), envelope, now))
    assert full is not None and full.storage_encrypted is True
    assert full.collected_at == now  # it established every field the check-in had
    partial_report = agent_report(_linux(encrypted=None, at=now))
    partial = _used(
        evaluator.choose_posture(
            AccessState(None, record, stored), {"format": "agent", "report": partial_report}, now
        )
    )
    assert partial is not None
    assert partial.storage_encrypted is True  # carried from the check-in
    assert partial.collected_at == stored.posture.collected_at  # and as old as it
    assert partial.os_version == "12"


def test_the_snapshot_gets_the_check_in_privacy_filter(app: Flask) -> None:
    """A BYOD device's snapshot is filtered like its check-ins: no personal app list."""
    _add_user(app)
    core = _core(app)
    dev = enroll_device(core, "u-alice", ownership=Ownership.BYOD, platform=Platform.LINUX)
    with core.storage.unit_of_work() as uow:
        record = uow.devices.get(dev.device_id)
    now = datetime.now(UTC)
    report = agent_report(_linux(at=now))
    report["installed_apps"] = [{"app_id": "org.personal.chat", "version": "1"}]
    report["hostname"] = "alices-home-pc"
    report["location"] = {"latitude": 48.1, "longitude": 11.6}
    posture = _used(
        access_evaluator(app).choose_posture(
            AccessState(None, record), {"format": "agent", "report": report}, now
        )
    )
    assert posture is not None
    assert posture.installed_apps == () and posture.location is None
    assert "hostname" not in core.privacy.for_ownership(Ownership.BYOD).collect
    assert posture.hostname is None
    assert posture.storage_encrypted is True


def test_unreadable_snapshots_are_refused_and_the_stored_posture_decides(
    app: Flask, provider: OIDCProvider
) -> None:
    """Not an envelope, an unknown format, a format for another platform, a bad value:
    each snapshot is refused; the stored (healthy) posture decides; nothing is stored."""
    _add_user(app)
    dev = _device(app)
    before = _stored(app, dev)
    now = datetime.now(UTC).isoformat()
    bad: list[Any] = [
        {"storage_encrypted": False, "collected_at": now},  # a bare report, not an envelope
        {"format": "agent"},
        {"format": "agent", "report": "encrypted"},
        {"format": "nope", "report": {"collected_at": now}},
        {"format": "android", "report": {"deviceSettings": {"isEncrypted": False}}},
        {"format": "agent", "report": {"storage_encrypted": "no", "collected_at": now}},
        {"format": 7, "report": {}},
    ]
    for snapshot in bad:
        browser, response = _login(app, provider, dev, snapshot)
        decision = _decision(app, dev)
        assert decision.outcome in {"allow", "warn"}, (snapshot, decision.detail)
        assert decision.detail.get("snapshot") == "refused", (snapshot, decision.detail)
        _finish(browser, response)
    assert _stored(app, dev).seq == before.seq


def test_a_stale_snapshot_is_not_used(app: Flask, provider: OIDCProvider) -> None:
    _add_user(app)
    dev = _device(app)
    old = datetime.now(UTC) - timedelta(minutes=30)
    _, response = _login(app, provider, dev, _envelope(_linux(encrypted=False, at=old)))
    decision = _decision(app, dev)
    assert decision.outcome in {"allow", "warn"}, decision.detail  # the stored posture decided
    assert decision.detail.get("snapshot") == "stale"
