"""The check-in hot path's SQL budget, pinned (issue 9 item 6), on SQLite and PostgreSQL.

A signed check-in over HTTP (Flask test client, the whole view: proof, report, compliance
hook, outbox) is counted with SQLAlchemy engine events: statements sent, transactions begun
and committed. On PostgreSQL each statement is one round trip and psycopg sends BEGIN and
COMMIT as one each. The steady state (same posture again, nothing pending, verdict unchanged)
must stay within the budget below; a change that adds a statement to it fails here, so it is
a decision, not an accident. The guarantees are asserted alongside: a replayed proof is
refused and changes nothing, and a degrading check-in quarantines in its own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from mdm_core.api.checkin_views import bp
from mdm_core.domain.model import DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import used_proofs
from tests.helpers.enrolled import PUBLIC_URL, EnrolledDevice, enroll_device, make_core

#: Steady-state budget per check-in: (statements, transactions). PostgreSQL: identity+replay,
#: posture+groups+compliance state, outbox insert.
BUDGET = {"postgresql": (3, 1), "sqlite": (10, 1)}

REPORT: dict[str, Any] = {
    "os_version": "6.8",
    "os_build": "6.8.0",
    "storage_encrypted": True,
    "firewall_enabled": True,
    "secure_boot": True,
    "agent_present": True,
    "agent_version": "0.1.0",
}


@dataclass
class Counter:
    statements: list[str] = field(default_factory=list)
    begins: int = 0
    commits: int = 0

    def reset(self) -> None:
        self.statements.clear()
        self.begins = self.commits = 0


@pytest.fixture
def core(database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    built = make_core(database, tmp_path)
    built.relay.stop()  # the relay's own transactions are not the check-in's
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def counter(core: MdmCore) -> Iterator[Counter]:
    seen = Counter()
    engine = core.database.engine

    def on_execute(*args: Any) -> None:
        seen.statements.append(" ".join(str(args[2]).split()[:3]))

    def on_begin(_conn: Any) -> None:
        seen.begins += 1

    def on_commit(_conn: Any) -> None:
        seen.commits += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "begin", on_begin)
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "commit", on_commit)


def _client(core: MdmCore) -> FlaskClient:
    app = Flask("round-trips")
    app.extensions["posture"] = SimpleNamespace(core=core)
    app.register_blueprint(bp)
    return app.test_client()


def _check_in(
    client: FlaskClient, dev: EnrolledDevice, report: dict[str, Any], proof: str | None = None
) -> tuple[Any, str]:
    body = json.dumps({"format": "agent", "report": report}).encode()
    proof = proof or dev.request_proof("POST", PUBLIC_URL + "/mdm/v1/checkin", body)
    return client.post(
        "/mdm/v1/checkin",
        data=body,
        headers={"Device-Proof": proof, "Content-Type": "application/json"},
    ), proof


def _in_groups(core: MdmCore, user: str) -> None:
    now = datetime.now(UTC)
    with core.storage.unit_of_work() as uow:
        uow.directory_users.upsert(DirectoryUser(user, user, True, "local", now))
        for gid in ("g-staff", "g-eng"):
            uow.directory_groups.upsert(DirectoryGroup(gid, gid[2:], "local", now))
        uow.memberships.add(Membership("g-staff", user, MemberKind.USER))
        uow.memberships.add(Membership("g-eng", "g-staff", MemberKind.GROUP))  # nested


@pytest.mark.parametrize("grouped", [False, True], ids=["no-groups", "nested-groups"])
def test_a_steady_checkin_stays_within_its_sql_budget(
    core: MdmCore, counter: Counter, grouped: bool
) -> None:
    client = _client(core)
    dev = enroll_device(core, "alice", ownership=Ownership.CORPORATE, platform=Platform.LINUX)
    if grouped:
        _in_groups(core, "alice")
    for _ in range(2):  # first report, then the verdict settles
        assert _check_in(client, dev, REPORT)[0].status_code == 200
    counter.reset()
    response, _ = _check_in(client, dev, REPORT)
    assert response.status_code == 200, response.get_json()
    statements, transactions = BUDGET[core.database.dialect]
    assert counter.begins == transactions and counter.commits == transactions
    assert len(counter.statements) <= statements, counter.statements


def test_a_two_channel_device_costs_one_statement_more(core: MdmCore, counter: Counter) -> None:
    """An iPhone reporting over MDM and through its app: each check-in merges the other
    channel's fields, which costs one more statement (the merged latest posture)."""
    client = _client(core)
    dev = enroll_device(core, "alice", ownership=Ownership.CORPORATE, platform=Platform.IOS)
    bodies = [
        json.dumps({"format": fmt, "report": report}).encode()
        for fmt, report in native_reports("ios", "SERIAL-1", "corporate", DeviceTraits())
    ]
    assert len(bodies) == 2

    def check_in(body: bytes) -> Any:
        proof = dev.request_proof("POST", PUBLIC_URL + "/mdm/v1/checkin", body)
        headers = {"Device-Proof": proof, "Content-Type": "application/json"}
        return client.post("/mdm/v1/checkin", data=body, headers=headers)

    for body in bodies * 2:  # both channels, then the verdict settles
        assert check_in(body).status_code == 200
    merge = 1 if core.database.dialect == "postgresql" else 2  # SQLite: latest, history
    for body in bodies:
        counter.reset()
        response = check_in(body)
        assert response.status_code == 200, response.get_json()
        statements, transactions = BUDGET[core.database.dialect]
        assert counter.begins == transactions and counter.commits == transactions
        assert len(counter.statements) <= statements + merge, counter.statements
    with core.storage.unit_of_work() as uow:
        latest = uow.posture.latest(dev.device_id)
    assert latest is not None and latest.posture.jailbroken is False  # from the app's report
    assert latest.posture.os_version  # from the MDM answer


def test_a_replayed_proof_is_refused_and_changes_nothing(core: MdmCore) -> None:
    client = _client(core)
    dev = enroll_device(core, "alice", ownership=Ownership.CORPORATE, platform=Platform.LINUX)
    first, proof = _check_in(client, dev, REPORT)
    assert first.status_code == 200

    def counts() -> int:
        with core.database.transaction() as conn:
            return int(conn.execute(select(func.count()).select_from(used_proofs)).scalar_one())

    before = counts()
    again, _ = _check_in(client, dev, REPORT, proof=proof)
    assert again.status_code == 401 and again.get_json()["error"] == "replayed_proof"
    with core.storage.unit_of_work() as uow:
        latest = uow.posture.latest(dev.device_id)
    assert latest is not None and latest.seq == 1
    assert counts() == before
    # the refusal's own audit event may follow the rolled back unit; no check-in event does
    with core.storage.unit_of_work() as uow:
        types = [e.event.type for e in uow.outbox.fetch_unpublished(1000)]
    assert types.count("posture.reported") == 1


def test_a_degrading_checkin_quarantines_with_its_posture(core: MdmCore) -> None:
    client = _client(core)
    dev = enroll_device(core, "alice", ownership=Ownership.CORPORATE, platform=Platform.LINUX)
    assert _check_in(client, dev, REPORT)[0].status_code == 200
    bad, _ = _check_in(client, dev, {**REPORT, "storage_encrypted": False})
    assert bad.status_code == 200
    assert bad.get_json()["compliance"]["state"] == "quarantined"
    with core.storage.unit_of_work() as uow:
        record = uow.devices.get(dev.device_id)
        latest = uow.posture.latest(dev.device_id)
        types = [e.event.type for e in uow.outbox.fetch_unpublished(1000)]
    assert record is not None and record.status is DeviceStatus.QUARANTINED
    assert latest is not None and latest.seq == 2 and latest.posture.storage_encrypted is False
    assert "compliance.changed" in types and types.count("posture.reported") == 2
