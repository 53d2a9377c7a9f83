"""The decision hot path's budget, pinned: statements and transactions of one warm decision.

Measured before the read model (issue 9 item 5): 11 statements in 6 transactions per
``POST /api/v1/decision`` (token grant lookup; identity link + user; nonce; device identity
+ proof replay; user, memberships, posture, rule failures; audit insert). With the read model
warm, the request thread runs: one version read for the bearer token and the user, the
nonce, the proof's device identity + replay record, one version read for the decision's
device and directory; the audit record goes to the group-commit writer (its own thread,
shared commits) and the request waits for it.

Also here: the cache never outlives a change (a degraded device, a disabled user, a revoked
token are seen by the next request) and an audit that cannot be written blocks.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, update

from mdm_core.posture.model import Platform
from mdm_core.read_model.wiring import read_model_of
from mdm_core.simulator.reports import DeviceTraits
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.sql.tables import devices
from posture_gateway.oidc.tables import oidc_tokens
from tests.conftest import _fresh_postgres_db
from tests.helpers.enrolled import EnrolledDevice
from tests.unit.posture_gateway.integrations.test_posture_api import URL, bearer, issue
from tests.unit.posture_gateway.integrations.test_posture_api_real import (
    AUDIENCE,
    _device,
    api_nonce,
)

#: The budget of one warm decision on the request thread (SQL nonces, no Redis): on
#: PostgreSQL the request is ONE transaction; on SQLite each step keeps its own (in-process,
#: no round trips; a shared one would hold the file's write lock across the audit wait).
MAX_STATEMENTS = 5
MAX_TRANSACTIONS = {"sqlite": 4, "postgresql": 1}


@pytest.fixture(params=["sqlite", "postgres"])
def app_settings_extra(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "sqlite":
        return {}
    return {"database_url": _fresh_postgres_db(request.getfixturevalue("postgres_server_url"))}


class _Trace:
    """Statements and transactions run on THIS thread while the block runs."""

    def __init__(self, app: Flask) -> None:
        self.engine = app.extensions["posture"].core.database.engine
        self.thread = threading.get_ident()
        self.statements: list[str] = []
        self.transactions = 0

    def _stmt(self, _c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if threading.get_ident() == self.thread:
            self.statements.append(statement.split("\n")[0][:80])

    def _begin(self, _c: Any) -> None:
        if threading.get_ident() == self.thread:
            self.transactions += 1

    def __enter__(self) -> _Trace:
        event.listen(self.engine, "before_cursor_execute", self._stmt)
        event.listen(self.engine, "begin", self._begin)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._stmt)
        event.remove(self.engine, "begin", self._begin)


def _decide(app: Flask, dev: EnrolledDevice, token: str) -> Any:
    nonce = api_nonce(app, token)["nonce"]
    body = {
        "user": "alice",
        "client_id": "payroll",
        "device_id": dev.device_id,
        "device_proof": dev.login_proof(audience=AUDIENCE, nonce=nonce),
    }
    return app.test_client().post(URL, json=body, headers=bearer(token))


def test_a_warm_decision_stays_within_the_budget(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    token = issue(app)
    for _ in range(2):  # warms the read model (the first one links the identity: a write)
        assert _decide(app, dev, token).json["outcome"] != "block"
    nonce = api_nonce(app, token)["nonce"]
    body = {
        "user": "alice",
        "client_id": "payroll",
        "device_id": dev.device_id,
        "device_proof": dev.login_proof(audience=AUDIENCE, nonce=nonce),
    }
    with _Trace(app) as trace:
        answer = app.test_client().post(URL, json=body, headers=bearer(token))
    assert answer.get_json()["outcome"] != "block"
    assert len(trace.statements) <= MAX_STATEMENTS, trace.statements
    dialect = app.extensions["posture"].core.database.dialect
    assert trace.transactions <= MAX_TRANSACTIONS[dialect], trace.statements
    # ... and the decision was audited (durable when the response returned).
    with app.extensions["posture"].core.storage.unit_of_work() as uow:
        outcomes = [
            e.outcome for e in uow.audit.recent(dev.device_id) if e.action == "access.decision"
        ]
    assert len(outcomes) == 3


def test_a_degrading_check_in_is_seen_by_the_next_decision(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    token = issue(app)
    assert _decide(app, dev, token).json["outcome"] != "block"
    core = app.extensions["posture"].core
    with core.database.transaction() as conn:  # any path that changes the device
        conn.execute(update(devices).where(devices.c.id == dev.device_id).values(status="lost"))
    answer = _decide(app, dev, token).json
    assert answer["outcome"] == "block", answer


def test_a_disabled_user_is_blocked_at_once(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    token = issue(app)
    assert _decide(app, dev, token).json["outcome"] != "block"
    app.extensions["posture"].core.directory.upsert_user(
        DirectoryUser(
            id="u-alice", username="alice", active=False, source="local",
            updated_at=datetime.now(UTC),
        )
    )  # fmt: skip
    assert _decide(app, dev, token).json["outcome"] == "block"


def test_a_revoked_bearer_token_is_refused_on_the_next_request(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    token = issue(app)
    assert _decide(app, dev, token).json["outcome"] != "block"  # verified and cached
    core = app.extensions["posture"].core
    with core.database.transaction() as conn:
        conn.execute(update(oidc_tokens).values(revoked_at=datetime.now(UTC), revoked_reason="t"))
    refused = app.test_client().post("/api/v1/nonce", headers=bearer(token))
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_token"


def test_an_audit_that_cannot_be_written_blocks(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    token = issue(app)
    core = app.extensions["posture"].core
    read_model_of(core).audit.close()  # the writer refuses every record from now on
    nonce = api_nonce(app, token)["nonce"]
    body = {
        "user": "alice",
        "client_id": "payroll",
        "device_id": dev.device_id,
        "device_proof": dev.login_proof(audience=AUDIENCE, nonce=nonce),
    }
    answer = app.test_client().post(URL, json=body, headers=bearer(token))
    assert answer.status_code == 503 and answer.get_json()["outcome"] == "block"
    with core.storage.unit_of_work() as uow:
        assert not [e for e in uow.audit.recent(dev.device_id) if e.outcome == "allow"]
