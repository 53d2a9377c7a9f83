"""The device protocol over HTTP (Flask test client) with real signed proofs, on SQLite and
PostgreSQL: check-ins, privacy by construction down to raw rows, commands end to end,
bad input changing nothing, restart durability, bounded history, long-poll."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from mdm_core.api.checkin_views import bp
from mdm_core.bus.events import DomainEvent
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import (
    audit_log,
    command_transitions,
    commands,
    devices,
    outbox,
    posture_history,
    posture_latest,
    used_proofs,
)
from tests.helpers.enrolled import PUBLIC_URL, EnrolledDevice, enroll_device, make_core

PERSONAL_APP = "com.personal.secretchat"
SERIAL = "SER-PRIVATE-9911"
HOSTNAME = "alices-private-phone"
LATITUDE = 48.858370


def _app(core: MdmCore, max_bytes: int = 256 * 1024) -> Flask:
    app = Flask("checkin-test")
    app.config["MAX_CONTENT_LENGTH"] = max_bytes
    app.extensions["posture"] = SimpleNamespace(core=core)
    app.register_blueprint(bp)
    return app


@pytest.fixture
def core(database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    built = make_core(database, tmp_path, posture_history_length=3)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(core: MdmCore) -> FlaskClient:
    return _app(core).test_client()


class Device:
    """A device talking to the test client: signs every request with its enrolled key."""

    def __init__(self, client: FlaskClient, enrolled: EnrolledDevice) -> None:
        self.client = client
        self.enrolled = enrolled
        self.id = enrolled.device_id

    def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        content_type: str | None = "application/json",
        proof: str | None = None,
        query: str = "",
    ) -> Any:
        headers = {
            "Device-Proof": proof or self.enrolled.request_proof(method, PUBLIC_URL + path, body)
        }
        if content_type:
            headers["Content-Type"] = content_type
        return self.client.open(path + query, method=method, data=body, headers=headers)

    def check_in(self, fmt: str, report: dict[str, Any]) -> Any:
        body = json.dumps({"format": fmt, "report": report}).encode()
        return self.send("POST", "/mdm/v1/checkin", body)

    def result(self, command_id: str, status: str, detail: str | None = None) -> Any:
        body = json.dumps({"status": status, "detail": detail}).encode()
        return self.send("POST", f"/mdm/v1/commands/{command_id}/result", body)


def _device(
    core: MdmCore,
    client: FlaskClient,
    ownership: Ownership = Ownership.CORPORATE,
    platform: Platform = Platform.LINUX,
    user: str = "alice",
) -> Device:
    return Device(client, enroll_device(core, user, ownership=ownership, platform=platform))


AGENT_REPORT: dict[str, Any] = {
    "os_version": "12",
    "os_build": "6.1.0",
    "storage_encrypted": True,
    "firewall_enabled": True,
    "secure_boot": True,
    "agent_present": True,
    "agent_version": "0.1.0",
    "serial_number": SERIAL,
    "hostname": HOSTNAME,
    "installed_apps": [{"app_id": PERSONAL_APP, "version": "1"}],
    "location": {"latitude": LATITUDE, "longitude": 2.294481},
}


def _snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    tables = [
        posture_latest,
        posture_history,
        commands,
        command_transitions,
        outbox,
        audit_log,
        used_proofs,
        devices,
    ]
    with database.transaction() as conn:
        return {
            t.name: sorted(repr(tuple(r)) for r in conn.execute(select(t)))  # type: ignore[misc]
            for t in tables
        }


def _raw_text(database: Database) -> str:
    """Every row of every table, as text (what an attacker with the DB would read)."""
    chunks = []
    with database.transaction() as conn:
        for name in [
            "posture_latest",
            "posture_history",
            "outbox",
            "audit_log",
            "commands",
            "command_transitions",
            "devices",
        ]:
            for row in conn.execute(text(f"SELECT * FROM {name}")):  # noqa: S608 - fixed names
                chunks.append(repr(tuple(row)))
    return "\n".join(chunks)


# --- check-in ---------------------------------------------------------------------------------


def test_checkin_answers_commands_collect_compliance(core: MdmCore, client: FlaskClient) -> None:
    dev = _device(core, client)
    resp = dev.check_in("agent", AGENT_REPORT)
    assert resp.status_code == 200, resp.get_json()
    answer = resp.get_json()
    assert answer["commands"] == []
    assert answer["collect"] == core.privacy.for_ownership(Ownership.CORPORATE).collect_list
    assert answer["next_checkin_s"] == 900
    # the shipped policies evaluate it: a Linux agent reporting no screen lock gets a warning
    assert answer["compliance"]["state"] == "noncompliant"
    assert answer["compliance"]["outcome"] == "warn"
    assert {r["rule_id"] for r in answer["compliance"]["reasons"]} == {"screen-lock"}
    assert answer["seq"] == 1
    with core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(dev.id)
        device = uow.devices.get(dev.id)
    assert stored is not None and stored.posture.storage_encrypted is True
    assert stored.posture.serial_number == SERIAL  # corporate profile keeps the serial
    assert stored.posture.location is None  # no profile keeps location
    assert device is not None and device.last_checkin_at is not None


def test_posture_events_reported_and_changed(core: MdmCore, client: FlaskClient) -> None:
    seen: list[DomainEvent] = []
    core.bus.subscribe("posture", seen.append)
    dev = _device(core, client)
    dev.check_in("agent", AGENT_REPORT)
    dev.check_in("agent", AGENT_REPORT)
    dev.check_in("agent", {**AGENT_REPORT, "storage_encrypted": False})
    core.relay.drain()
    types = [(e.type, e.payload["seq"]) for e in seen]
    assert types == [
        ("posture.reported", 1),
        ("posture.changed", 1),
        ("posture.reported", 2),
        ("posture.reported", 3),
        ("posture.changed", 3),
    ]
    assert seen[1].payload["first_report"] is True
    assert seen[4].payload["changes"] == {"storage_encrypted": {"old": True, "new": False}}
    assert seen[4].payload["user_id"] == "alice" and seen[4].subject == dev.id


def test_byod_personal_data_never_reaches_the_database(
    core: MdmCore, client: FlaskClient, database: Database
) -> None:
    android = _device(core, client, Ownership.BYOD, Platform.ANDROID)
    iphone = _device(core, client, Ownership.BYOD, Platform.IOS, user="bob")
    resp = android.check_in(
        "android",
        {
            "softwareInfo": {"androidVersion": "15", "securityPatchLevel": "2026-01-05"},
            "deviceSettings": {"isEncrypted": True, "isDeviceSecure": True},
            "hardwareInfo": {"serialNumber": SERIAL, "model": "Pixel 8"},
            "applicationReports": [{"packageName": PERSONAL_APP, "versionName": "2"}],
        },
    )
    assert resp.status_code == 200
    assert "installed_apps" not in resp.get_json()["collect"]
    resp = iphone.check_in(
        "apple",
        {
            "OSVersion": "18.1",
            "SerialNumber": SERIAL,
            "DeviceName": HOSTNAME,
            "SecurityInfo": {"HardwareEncryptionCaps": 3, "PasscodePresent": True},
            "ManagedApps": [{"Identifier": "com.corp.mail", "ShortVersion": "3"}],
            "InstalledApplicationList": [{"Identifier": PERSONAL_APP, "ShortVersion": "2"}],
            "DeviceLocation": {"Latitude": LATITUDE, "Longitude": 2.29},
        },
    )
    assert resp.status_code == 200
    linux = _device(core, client, Ownership.BYOD, Platform.LINUX, user="carol")
    assert linux.check_in("agent", AGENT_REPORT).status_code == 200
    core.relay.drain()
    raw = _raw_text(database)
    for secret in (PERSONAL_APP, SERIAL, HOSTNAME, str(LATITUDE), "latitude", "installed_apps"):
        assert secret not in raw, f"{secret!r} reached the database"
    with core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(iphone.id)
    assert stored is not None
    assert stored.posture.storage_encrypted is True  # the security state is kept
    assert [a.app_id for a in stored.posture.managed_apps] == ["com.corp.mail"]


def test_history_is_bounded(core: MdmCore, client: FlaskClient, database: Database) -> None:
    dev = _device(core, client)
    for n in range(7):
        assert dev.check_in("agent", {**AGENT_REPORT, "os_build": f"b{n}"}).status_code == 200
    with core.storage.unit_of_work() as uow:
        history = uow.posture.history(dev.id)
    assert [h.posture.os_build for h in history] == ["b6", "b5", "b4"]
    with database.transaction() as conn:
        count = conn.execute(
            text("SELECT COUNT(*) FROM posture_history WHERE device_id = :d"), {"d": dev.id}
        ).scalar_one()
    assert count == 3


# --- bad input changes nothing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "bad_request"),
        (b'{"format": 5, "report": {}}', "application/json", 400, "bad_request"),
        (b'{"format": "agent", "report": []}', "application/json", 400, "bad_request"),
        (b'{"format": "agent", "report": {}}', "text/plain", 415, "unsupported_media_type"),
        (b'{"format": "nokia", "report": {}}', "application/json", 422, "unsupported_format"),
        (b'{"format": "android", "report": {}}', "application/json", 422, "format_mismatch"),
        (
            b'{"format": "agent", "report": {"storage_encrypted": "yes"}}',
            "application/json",
            422,
            "invalid_report",
        ),
    ],
)
def test_bad_checkin_input_changes_nothing(
    core: MdmCore,
    client: FlaskClient,
    database: Database,
    body: bytes,
    content_type: str,
    status: int,
    error: str,
) -> None:
    dev = _device(core, client)
    assert dev.check_in("agent", AGENT_REPORT).status_code == 200
    core.commands.enqueue(dev.id, "lock", {}, created_by="admin:t")
    core.relay.drain()
    before = _snapshot(database)
    resp = dev.send("POST", "/mdm/v1/checkin", body, content_type=content_type)
    assert resp.status_code == status
    data = resp.get_json()
    assert data["error"] == error and data["reason"]
    core.relay.drain()
    assert _snapshot(database) == before


def test_too_large_body_is_413_and_changes_nothing(core: MdmCore, database: Database) -> None:
    client = _app(core, max_bytes=2048).test_client()
    dev = _device(core, client)
    report = {**AGENT_REPORT, "installed_apps": [{"app_id": f"a{i}"} for i in range(200)]}
    core.relay.drain()
    before = _snapshot(database)
    resp = dev.check_in("agent", report)
    assert resp.status_code == 413
    assert resp.get_json()["error"] == "request_entity_too_large"
    assert _snapshot(database) == before


def test_proof_failures_are_401_with_reason(core: MdmCore, client: FlaskClient) -> None:
    dev = _device(core, client)
    body = json.dumps({"format": "agent", "report": AGENT_REPORT}).encode()
    cases = {
        "malformed_proof": dev.client.post(
            "/mdm/v1/checkin", data=body, content_type="application/json"
        ),
        "wrong_target": dev.send(
            "POST",
            "/mdm/v1/checkin",
            body,
            proof=dev.enrolled.request_proof("POST", PUBLIC_URL + "/mdm/v1/other", body),
        ),
        "body_mismatch": dev.send(
            "POST",
            "/mdm/v1/checkin",
            body,
            proof=dev.enrolled.request_proof("POST", PUBLIC_URL + "/mdm/v1/checkin", b"{}"),
        ),
    }
    for reason, resp in cases.items():
        assert resp.status_code == 401, reason
        assert resp.get_json()["error"] == reason
        assert resp.headers["WWW-Authenticate"].startswith("DeviceProof")
    proof = dev.enrolled.request_proof("POST", PUBLIC_URL + "/mdm/v1/checkin", body)
    assert dev.send("POST", "/mdm/v1/checkin", body, proof=proof).status_code == 200
    replay = dev.send("POST", "/mdm/v1/checkin", body, proof=proof)
    assert replay.status_code == 401 and replay.get_json()["error"] == "replayed_proof"
    with core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(dev.id)
    assert stored is not None and stored.seq == 1


def test_authorization_scheme_is_accepted(core: MdmCore, client: FlaskClient) -> None:
    dev = _device(core, client)
    body = json.dumps({"format": "agent", "report": AGENT_REPORT}).encode()
    proof = dev.enrolled.request_proof("POST", PUBLIC_URL + "/mdm/v1/checkin", body)
    resp = client.post(
        "/mdm/v1/checkin",
        data=body,
        headers={"Authorization": f"DeviceProof {proof}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 200


# --- commands end to end ------------------------------------------------------------------------


def test_command_delivery_ack_and_idempotent_redelivery(core: MdmCore, client: FlaskClient) -> None:
    dev = _device(core, client)
    other = _device(core, client, user="bob")
    lock = core.commands.enqueue(dev.id, "lock", {"message": "Call IT"}, created_by="admin:a")
    first = dev.check_in("agent", AGENT_REPORT).get_json()["commands"]
    assert first == [
        {"id": lock.id, "type": "lock", "payload": {"message": "Call IT", "phone_number": None}}
    ]
    # not acknowledged: delivered again at the next check-in
    assert dev.check_in("agent", AGENT_REPORT).get_json()["commands"] == first
    assert other.result(lock.id, "acknowledged").status_code == 404  # not its command
    resp = dev.result(lock.id, "acknowledged", "locked")
    assert resp.status_code == 200 and resp.get_json() == {"id": lock.id, "status": "acknowledged"}
    again = dev.result(lock.id, "acknowledged")  # a second ack is a no-op
    assert again.status_code == 200
    assert dev.check_in("agent", AGENT_REPORT).get_json()["commands"] == []
    late = dev.result(lock.id, "error", "too late")
    assert late.status_code == 409 and late.get_json()["error"] == "illegal_transition"
    steps = [(t.from_status, t.to_status) for t in core.commands.transitions(lock.id)]
    assert [s[1].value for s in steps] == ["queued", "delivered", "delivered", "acknowledged"]
    stored = core.commands.get(lock.id)
    assert stored is not None and stored.attempts == 2


def test_not_now_then_redelivered(core: MdmCore, client: FlaskClient) -> None:
    dev = _device(core, client)
    cmd = core.commands.enqueue(dev.id, "install_app", {"app_id": "corp.vpn"}, created_by="t")
    dev.check_in("agent", AGENT_REPORT)
    assert dev.result(cmd.id, "not_now", "user busy").status_code == 200
    assert [c["id"] for c in dev.check_in("agent", AGENT_REPORT).get_json()["commands"]] == [cmd.id]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b'{"status": "done"}', 422, "invalid_command"),
        (b'{"status": 1}', 400, "bad_request"),
        (b'{"status": "acknowledged", "detail": 5}', 400, "bad_request"),
        (b"nope", 400, "invalid_json"),
    ],
)
def test_bad_result_input_changes_nothing(
    core: MdmCore,
    client: FlaskClient,
    database: Database,
    body: bytes,
    status: int,
    error: str,
) -> None:
    dev = _device(core, client)
    cmd = core.commands.enqueue(dev.id, "lock", {}, created_by="t")
    dev.check_in("agent", AGENT_REPORT)
    core.relay.drain()
    before = _snapshot(database)
    resp = dev.send("POST", f"/mdm/v1/commands/{cmd.id}/result", body)
    assert resp.status_code == status and resp.get_json()["error"] == error
    assert _snapshot(database) == before


def test_commands_survive_a_restart(database: Database, tmp_path: Path) -> None:
    first = make_core(database, tmp_path)
    client = _app(first).test_client()
    dev = _device(first, client)
    wipe = first.commands.enqueue(
        dev.id, "selective_wipe", {}, created_by="hr", idempotency_key="offboard-1"
    )
    first.close()  # the server goes down while the device is offline
    second = make_core(database, tmp_path)  # rebuilt on the same database
    try:
        dev.client = _app(second).test_client()
        again = second.commands.enqueue(
            dev.id, "selective_wipe", {}, created_by="hr", idempotency_key="offboard-1"
        )
        assert again.id == wipe.id  # double-fired: still one wipe
        delivered = dev.check_in("agent", AGENT_REPORT).get_json()["commands"]
        assert [c["id"] for c in delivered] == [wipe.id]
    finally:
        second.close()


# --- long-poll and notice ---------------------------------------------------------------------


def test_wait_returns_when_a_command_is_queued(core: MdmCore, client: FlaskClient) -> None:
    dev = _device(core, client)
    out: dict[str, Any] = {}

    def wait() -> None:
        started = time.monotonic()
        resp = dev.send("GET", "/mdm/v1/commands/wait", content_type=None, query="?timeout=20")
        out["resp"], out["took"] = resp, time.monotonic() - started

    worker = threading.Thread(target=wait)
    worker.start()
    time.sleep(0.3)
    core.commands.enqueue(dev.id, "request_checkin", {}, created_by="admin:a")
    worker.join(15)
    assert not worker.is_alive()
    assert out["resp"].status_code == 200
    assert out["resp"].get_json() == {"pending": 1, "ended": "command_queued", "timeout_s": 20}
    assert out["took"] < 5
    # already pending: answers at once
    resp = dev.send("GET", "/mdm/v1/commands/wait", content_type=None, query="?timeout=20")
    assert resp.get_json() == {"pending": 1, "ended": "pending", "timeout_s": 20}


def test_wait_times_out_empty_and_validates_timeout(core: MdmCore, client: FlaskClient) -> None:
    dev = _device(core, client)
    other = _device(core, client, user="bob")
    started = time.monotonic()
    core.commands.enqueue(other.id, "lock", {}, created_by="t")  # not for this device
    resp = dev.send("GET", "/mdm/v1/commands/wait", content_type=None, query="?timeout=1")
    assert resp.get_json() == {"pending": 0, "ended": "timeout", "timeout_s": 1}
    assert 0.9 <= time.monotonic() - started < 5
    for bad in ("61", "-1", "soon"):
        resp = dev.send("GET", "/mdm/v1/commands/wait", content_type=None, query=f"?timeout={bad}")
        assert resp.status_code == 400 and resp.get_json()["error"] == "bad_request"
    unsigned = client.get("/mdm/v1/commands/wait?timeout=1")
    assert unsigned.status_code == 401


def test_privacy_notice(core: MdmCore, client: FlaskClient) -> None:
    resp = client.get("/mdm/v1/privacy-notice?ownership=byod")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["profile"] == "byod-default" and "Your personal apps" in doc["cannot_see"]
    assert "installed_apps" not in [c["field"] for c in doc["collected"]]
    assert client.get("/mdm/v1/privacy-notice?ownership=corporate").get_json()["profile"] == (
        "corporate-default"
    )
    bad = client.get("/mdm/v1/privacy-notice?ownership=rented")
    assert bad.status_code == 400 and bad.get_json()["error"] == "bad_request"


def test_mdm_and_companion_reports_merge(core: MdmCore, client: FlaskClient) -> None:
    from mdm_core.simulator.reports import DeviceTraits, native_reports

    phone = _device(core, client, Ownership.CORPORATE, Platform.IOS)
    for fmt, report in native_reports("ios", "SER-1", "corporate", DeviceTraits(jailbroken=True)):
        assert phone.check_in(fmt, report).status_code == 200
    with core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(phone.id)
        history = uow.posture.history(phone.id)
    assert stored is not None
    assert stored.posture.os_version == "18.1"  # from the MDM report
    assert stored.posture.storage_encrypted is True
    assert stored.posture.jailbroken is True  # from the companion app
    assert history[0].posture == stored.posture  # the history slot holds the merge too


def test_without_a_compliance_hook_the_state_is_unknown(core: MdmCore, client: FlaskClient) -> None:
    core.checkin.set_compliance_hook(None)
    dev = _device(core, client)
    compliance = dev.check_in("agent", AGENT_REPORT).get_json()["compliance"]
    assert compliance["state"] == "unknown" and compliance["outcome"] == "block"
    assert compliance["reasons"][0]["code"] == "no_compliance_policy"


def test_a_failing_compliance_hook_aborts_the_checkin(
    core: MdmCore, client: FlaskClient, database: Database
) -> None:
    class Broken:
        def after_checkin(self, uow, device, posture, previous, now):
            raise RuntimeError("policy engine bug")

    dev = _device(core, client)
    core.relay.drain()
    before = _snapshot(database)
    core.checkin.set_compliance_hook(Broken())
    resp = dev.check_in("agent", AGENT_REPORT)
    assert resp.status_code == 500 and resp.get_json()["error"] == "internal_error"
    assert _snapshot(database) == before  # fail closed: nothing half-written


def test_round_trips_of_a_checkin(core: MdmCore, client: FlaskClient, database: Database) -> None:
    """The check-in's own SQL: on PostgreSQL one statement for posture + history + last
    check-in + "commands waiting?", one outbox insert; the command query only when commands
    wait."""
    from sqlalchemy import event

    dev = _device(core, client)
    dev.check_in("agent", AGENT_REPORT)  # warm up caches
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(" ".join(statement.split()).lower())

    event.listen(core.database.engine, "before_cursor_execute", count)
    try:
        core.relay.stop()  # keep the relay's own statements out of the count
        assert dev.check_in("agent", AGENT_REPORT).status_code == 200
        idle = list(statements)
        statements.clear()
        core.commands.enqueue(dev.id, "lock", {}, created_by="t")
        statements.clear()
        assert dev.check_in("agent", AGENT_REPORT).status_code == 200
        busy = list(statements)
    finally:
        event.remove(core.database.engine, "before_cursor_execute", count)

    def mine(stmts: list[str], needle: str) -> int:
        return sum(1 for s in stmts if needle in s)

    outbox_inserts = mine(idle, "insert into outbox")
    assert outbox_inserts == 1
    if database.is_postgres:
        assert mine(idle, "posture_latest") == 1
        assert mine(idle, "from commands") == 1  # inside the posture statement (EXISTS)
        assert mine(busy, "from commands") == 2  # + the delivery query
    assert mine(busy, "update commands") == 1
    assert mine(busy, "insert into command_transitions") == 1
    assert mine(busy, "insert into outbox") == 1
