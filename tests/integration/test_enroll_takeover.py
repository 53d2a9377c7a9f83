"""Issue 7 finding 5: a serial number alone must not take over a corporate device, quarantine
must need a person to leave, and ``/enroll`` is rate limited across processes.

Over HTTP (Flask test client, enrollment + check-in blueprints) on SQLite and PostgreSQL,
with real device keys and signed check-ins. Every refusal asserts that nothing changed: the
real device keeps its key, its certificate and its status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mdm_core.api.checkin_views import bp as checkin_bp
from mdm_core.api.enrollment_views import bp as enrollment_bp
from mdm_core.domain.errors import Conflict, NotFound
from mdm_core.domain.model import DeviceStatus
from mdm_core.posture.model import Platform
from mdm_core.runtime import MdmCore
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.sql import tables
from mdm_core.storage.sql.database import Database
from tests.helpers.device_keys import DeviceKey
from tests.helpers.enrolled import PUBLIC_URL, make_core

SERIAL = "C02TAKEOVER1"


def _app(core: MdmCore) -> Flask:
    app = Flask("enroll-takeover-test")
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
    app.extensions["posture"] = SimpleNamespace(core=core)
    app.register_blueprint(enrollment_bp)
    app.register_blueprint(checkin_bp)
    return app


@pytest.fixture
def core(database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    built = make_core(database, tmp_path)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(core: MdmCore) -> FlaskClient:
    return _app(core).test_client()


class Laptop:
    """A corporate macOS device enrolled by serial over HTTP, checking in with its key."""

    def __init__(self, client: FlaskClient, key: DeviceKey, device_id: str) -> None:
        self.client, self.key, self.id = client, key, device_id

    def check_in(self, traits: DeviceTraits) -> list[dict[str, Any]]:
        answers = []
        for fmt, report in native_reports("macos", SERIAL, "corporate", traits):
            body = json.dumps({"format": fmt, "report": report}).encode()
            proof = self.key.request_proof(self.id, "POST", PUBLIC_URL + "/mdm/v1/checkin", body)
            resp = self.client.post(
                "/mdm/v1/checkin",
                data=body,
                headers={"Device-Proof": proof, "Content-Type": "application/json"},
            )
            assert resp.status_code == 200, resp.get_json()
            answers.append(resp.get_json())
        return answers


def _enroll(client: FlaskClient, key: DeviceKey, secret: str | None = None, **extra: Any) -> Any:
    body: dict[str, Any] = {
        "csr": key.csr_pem(),
        "platform": "macos",
        "ownership": "corporate",
        "serial_number": SERIAL,
        **extra,
    }
    if secret is not None:
        body["enrollment_secret"] = secret
    return client.post("/mdm/v1/enroll", json=body)


def _register(core: MdmCore) -> str:
    return core.enrollment.register_serial(
        SERIAL, Platform.MACOS, "alice", "admin:carol"
    ).enrollment_secret


def _enrolled(core: MdmCore, client: FlaskClient) -> tuple[Laptop, str]:
    secret = _register(core)
    key = DeviceKey.generate()
    resp = _enroll(client, key, secret)
    assert resp.status_code == 201, resp.get_json()
    return Laptop(client, key, resp.get_json()["device_id"]), secret


def _identity(core: MdmCore, device_id: str) -> dict[str, Any]:
    """What a takeover would change: the device row, its certificates, the serial binding."""
    with core.database.transaction() as conn:
        device = conn.execute(select(tables.devices).where(tables.devices.c.id == device_id)).one()
        certs = conn.execute(
            select(tables.certificates.c.serial, tables.certificates.c.revoked_at).where(
                tables.certificates.c.device_id == device_id
            )
        ).all()
        serial = conn.execute(
            select(tables.registered_serials).where(
                tables.registered_serials.c.serial_number == SERIAL
            )
        ).one()
        counts = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (tables.devices, tables.certificates, tables.outbox)
        }
    return {"device": tuple(device), "certs": sorted(certs), "serial": tuple(serial), **counts}


def _status(core: MdmCore, device_id: str) -> DeviceStatus:
    with core.storage.unit_of_work() as uow:
        device = uow.devices.get(device_id)
    assert device is not None
    return device.status


def _audit(core: MdmCore, action: str) -> list[Any]:
    with core.database.transaction() as conn:
        return list(
            conn.execute(select(tables.audit_log).where(tables.audit_log.c.action == action))
        )


def _quarantine(core: MdmCore, laptop: Laptop) -> None:
    laptop.check_in(DeviceTraits())
    assert _status(core, laptop.id) is DeviceStatus.ACTIVE
    laptop.check_in(DeviceTraits(encryption_off=True))  # a critical rule fails
    assert _status(core, laptop.id) is DeviceStatus.QUARANTINED


# --- the serial is an identifier, not a credential -----------------------------------------


def test_a_serial_alone_cannot_re_enroll_a_registered_device(
    core: MdmCore, client: FlaskClient
) -> None:
    laptop, _ = _enrolled(core, client)
    before = _identity(core, laptop.id)
    resp = _enroll(client, DeviceKey.generate())  # the attacker knows the serial only
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "invalid_enrollment_secret"
    assert _identity(core, laptop.id) == before  # nothing changed: no new key, no revocation
    with core.storage.unit_of_work() as uow:
        device = uow.devices.get(laptop.id)
        assert device is not None and device.cert_serial is not None
        assert not uow.certificates.is_revoked(device.cert_serial)
    laptop.check_in(DeviceTraits())  # the real device still works with its key


def test_a_wrong_secret_is_refused_audited_and_changes_nothing(
    core: MdmCore, client: FlaskClient
) -> None:
    laptop, secret = _enrolled(core, client)
    before = _identity(core, laptop.id)
    resp = _enroll(client, DeviceKey.generate(), secret[:-2] + "xx")
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "invalid_enrollment_secret"
    assert _identity(core, laptop.id) == before
    (entry,) = _audit(core, "enrollment.refused")
    assert entry.subject == SERIAL and entry.outcome == "refused"
    assert entry.actor.startswith("source:")
    assert entry.detail["reason"] == "invalid_enrollment_secret"
    assert secret not in json.dumps(entry.detail)  # the secret is never written anywhere


def test_serial_and_its_secret_re_enroll_after_a_factory_reset(
    core: MdmCore, client: FlaskClient
) -> None:
    laptop, secret = _enrolled(core, client)
    old_cert = _identity(core, laptop.id)["device"]
    new_key = DeviceKey.generate()
    resp = _enroll(client, new_key, secret)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["device_id"] == laptop.id and resp.get_json()["re_enrolled"] is True
    assert _identity(core, laptop.id)["device"] != old_cert
    Laptop(client, new_key, laptop.id).check_in(DeviceTraits())


def test_first_enrollment_by_serial_needs_the_secret_too(
    core: MdmCore, client: FlaskClient
) -> None:
    secret = _register(core)
    resp = _enroll(client, DeviceKey.generate())
    assert resp.status_code == 403 and resp.get_json()["error"] == "invalid_enrollment_secret"
    with core.storage.unit_of_work() as uow:
        registration = uow.serials.get(SERIAL)
    assert registration is not None and registration.device_id is None
    assert _enroll(client, DeviceKey.generate(), secret).status_code == 201


def test_registering_again_replaces_the_secret(core: MdmCore, client: FlaskClient) -> None:
    old = _register(core)
    new = _register(core)
    assert old != new
    assert _enroll(client, DeviceKey.generate(), old).status_code == 403
    assert _enroll(client, DeviceKey.generate(), new).status_code == 201


def test_only_the_secret_hash_is_stored(core: MdmCore) -> None:
    secret = _register(core)
    with core.database.transaction() as conn:
        row = conn.execute(select(tables.registered_serials)).one()
        audit = conn.execute(select(tables.audit_log.c.detail)).all()
    assert row.secret_hash is not None and len(row.secret_hash) == 64
    assert secret not in str(tuple(row)) and secret not in str(audit)


def test_a_serial_registered_without_a_secret_cannot_enroll(
    core: MdmCore, client: FlaskClient
) -> None:
    """Rows from before secrets existed (secret_hash NULL) fail closed until re-registered."""
    _register(core)
    with core.database.transaction() as conn:
        conn.execute(tables.registered_serials.update().values(secret_hash=None))
    resp = _enroll(client, DeviceKey.generate(), "anything")
    assert resp.status_code == 403 and resp.get_json()["error"] == "invalid_enrollment_secret"


# --- quarantine needs a person --------------------------------------------------------------


def test_quarantine_is_not_left_by_serial_re_enrollment_or_self_reported_checkins(
    core: MdmCore, client: FlaskClient
) -> None:
    laptop, secret = _enrolled(core, client)
    _quarantine(core, laptop)
    before = _identity(core, laptop.id)
    # the serial alone: refused, nothing changed
    assert _enroll(client, DeviceKey.generate()).status_code == 403
    assert _identity(core, laptop.id) == before
    # healthy self-reported check-ins: still quarantined
    laptop.check_in(DeviceTraits())
    assert _status(core, laptop.id) is DeviceStatus.QUARANTINED
    # even with the secret (it lives on the device that failed): a new key, still quarantined
    new_key = DeviceKey.generate()
    resp = _enroll(client, new_key, secret)
    assert resp.status_code == 201 and resp.get_json()["status"] == "quarantined"
    answers = Laptop(client, new_key, laptop.id).check_in(DeviceTraits())
    assert _status(core, laptop.id) is DeviceStatus.QUARANTINED
    assert answers[-1]["compliance"]["state"] == "quarantined"
    assert answers[-1]["compliance"]["outcome"] == "block"


def test_admin_release_then_a_passing_checkin_restores_the_device(
    core: MdmCore, client: FlaskClient
) -> None:
    laptop, _ = _enrolled(core, client)
    _quarantine(core, laptop)
    released = core.quarantine.release(
        laptop.id, actor="admin:carol", reason="disk re-encrypted, checked in person"
    )
    assert released.status is DeviceStatus.PENDING_VERIFICATION
    (entry,) = _audit(core, "device.release")
    assert entry.actor == "admin:carol" and entry.subject == laptop.id
    assert entry.detail["previous_status"] == "quarantined"
    assert "re-encrypted" in entry.detail["reason"]
    laptop.check_in(DeviceTraits(encryption_off=True))  # failing again: back to quarantine
    assert _status(core, laptop.id) is DeviceStatus.QUARANTINED
    core.quarantine.release(laptop.id, actor="admin:carol", reason="fixed for real")
    laptop.check_in(DeviceTraits())
    assert _status(core, laptop.id) is DeviceStatus.ACTIVE


def test_release_refuses_what_is_not_quarantined(core: MdmCore, client: FlaskClient) -> None:
    laptop, _ = _enrolled(core, client)
    before = _identity(core, laptop.id)
    with pytest.raises(Conflict):
        core.quarantine.release(laptop.id, actor="admin:carol", reason="why not")
    with pytest.raises(NotFound):
        core.quarantine.release("no-such-device", actor="admin:carol", reason="x")
    assert _identity(core, laptop.id) == before
    assert _audit(core, "device.release") == []


# --- rate limits on /enroll, shared by every process ----------------------------------------


def test_sixty_rapid_enrollments_hit_429_across_two_app_instances(
    database: Database, tmp_path: Path
) -> None:
    """Two cores on one database stand for two worker processes: they count together."""
    first = make_core(database, tmp_path)  # one data dir: the CA passphrase they share
    second = make_core(database, tmp_path)
    try:
        clients = [_app(first).test_client(), _app(second).test_client()]
        key = DeviceKey.generate()
        answers = []
        for i in range(60):  # guessed serials, alternating between the two processes
            resp = clients[i % 2].post(
                "/mdm/v1/enroll",
                json={
                    "csr": key.csr_pem(),
                    "platform": "macos",
                    "ownership": "corporate",
                    "serial_number": f"GUESS{i:04d}",
                },
            )
            answers.append(resp)
        statuses = [r.status_code for r in answers]
        limit = first.config.enroll_limit_per_source
        assert statuses[:limit] == [403] * limit  # unregistered serials, counted together
        assert set(statuses[limit:]) == {429}
        refused = answers[limit]
        assert refused.get_json()["error"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        (entry,) = _audit(first, "ratelimit.refused")  # audited once per window, not per hit
        assert entry.detail["limit"] == "enroll_source"
    finally:
        first.close()
        second.close()


def test_a_refused_enrollment_changes_nothing(core: MdmCore, tmp_path: Path) -> None:
    """Over the per-target limit, even the right secret is refused and nothing is issued."""
    secret = _register(core)
    client = _app(core).test_client()
    limit = core.config.enroll_limit_per_target
    for i in range(limit):  # an attacker burns the serial's attempts from many addresses
        resp = client.post(
            "/mdm/v1/enroll",
            json={
                "csr": DeviceKey.generate().csr_pem(),
                "platform": "macos",
                "ownership": "corporate",
                "serial_number": SERIAL,
                "enrollment_secret": "guess",
            },
            environ_base={"REMOTE_ADDR": f"203.0.113.{i + 1}"},
        )
        assert resp.status_code == 403
    with core.database.transaction() as conn:
        before = conn.execute(select(func.count()).select_from(tables.certificates)).scalar_one()
    resp = client.post(
        "/mdm/v1/enroll",
        json={
            "csr": DeviceKey.generate().csr_pem(),
            "platform": "macos",
            "ownership": "corporate",
            "serial_number": SERIAL,
            "enrollment_secret": secret,
        },
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert resp.status_code == 429 and resp.headers["Retry-After"]
    with core.database.transaction() as conn:
        after = conn.execute(select(func.count()).select_from(tables.certificates)).scalar_one()
    assert after == before == 0


def test_limiter_down_refuses_enrollment_with_503(core: MdmCore) -> None:
    from mdm_core.domain.infra_errors import InfraUnavailable

    class Down:
        def hit(self, key: str, limit: int, window: object) -> bool:
            raise InfraUnavailable("sql", "hit", "OperationalError")

        def allows(self, key: str, limit: int, window: object) -> bool:
            raise InfraUnavailable("sql", "read", "OperationalError")

    secret = _register(core)
    core.rate_limiter = Down()
    resp = _enroll(_app(core).test_client(), DeviceKey.generate(), secret)
    assert resp.status_code == 503 and resp.get_json()["error"] == "rate_limiter_unavailable"
    with core.storage.unit_of_work() as uow:
        registration = uow.serials.get(SERIAL)
    assert registration is not None and registration.device_id is None


def test_successful_enrollments_from_one_address_are_not_limited(core: MdmCore) -> None:
    """A fleet enrolled from one office address (or the simulator) is not slowed."""
    client = _app(core).test_client()
    count = core.config.enroll_limit_per_source + 5
    for i in range(count):
        secret = core.enrollment.register_serial(
            f"FLEET{i:03d}", Platform.MACOS, "alice", "admin:carol"
        ).enrollment_secret
        resp = client.post(
            "/mdm/v1/enroll",
            json={
                "csr": DeviceKey.generate().csr_pem(),
                "platform": "macos",
                "ownership": "corporate",
                "serial_number": f"FLEET{i:03d}",
                "enrollment_secret": secret,
            },
        )
        assert resp.status_code == 201, (i, resp.get_json())
