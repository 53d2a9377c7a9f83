"""The decision hot path's budget, pinned: statements, round trips, transactions, Redis trips.

Measured before the read model (issue 9 item 5): 11 statements in 6 transactions per
``POST /api/v1/decision``. With the read model warm, on PostgreSQL + Redis (production), the
request thread runs ONE autocommit version read (``tokens``, ``directory``, ``device:<kid>``
of the proof: bearer token, user, the proof's device identity and the decision's state are
all served from the version-checked cache) and ONE Redis pipeline (nonce ``DEL`` + proof
replay ``SET NX``); ``POST /api/v1/nonce`` the same version read and one ``SET``. The audit
record goes to the group-commit writer (its own thread, shared commits) and the request
waits for it. Each configuration (SQLite, PostgreSQL with SQL nonces, PostgreSQL + Redis)
has its budget in :data:`BUDGET`.

Also here, on every configuration: the cache never outlives a change (a degraded device, a
disabled user, a revoked token, a certificate revoked alone, a wiped device are seen by the
next request), a forged proof spends no nonce, and an audit that cannot be written blocks.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from sqlalchemy import event, update
from sqlalchemy.exc import OperationalError

from mdm_core.agent.keys import DeviceKey
from mdm_core.domain.errors import BadSignature, DeviceNotActive, RevokedCertificate, UnknownDevice
from mdm_core.posture.model import Platform
from mdm_core.read_model.cache import MISS
from mdm_core.read_model.wiring import read_model_of
from mdm_core.simulator.reports import DeviceTraits
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.sql.tables import certificates, devices
from posture_gateway.access.warm_start import init_read_model_warm
from posture_gateway.directory.ldap_schedule import SERVE_WORKER_ENV
from posture_gateway.oidc.tables import oidc_tokens
from tests.conftest import _fresh_postgres_db
from tests.helpers.enrolled import EnrolledDevice
from tests.unit.posture_gateway.integrations.test_posture_api import URL, bearer, issue
from tests.unit.posture_gateway.integrations.test_posture_api_real import (
    AUDIENCE,
    _device,
    api_nonce,
)

#: The budget of one warm request on its own thread, per store configuration: SQL statements,
#: PostgreSQL round trips (statements + the BEGIN and COMMIT psycopg really sends; an
#: autocommit read has neither), real transactions, Redis round trips. Measured before this
#: budget (issue 9 item 5, PostgreSQL + Redis): decision 3 statements / 5 round trips / 2
#: Redis round trips, nonce 1 statement / 3 round trips / 1 Redis round trip.
BUDGET: dict[str, dict[str, dict[str, int]]] = {
    "decision": {
        # version read (autocommit), then the nonce spend + replay record (one transaction)
        "postgres": {"statements": 3, "round_trips": 5, "transactions": 1, "redis": 0},
        # ONE version read (tokens, directory, device:<kid>), ONE Redis pipeline
        "postgres+redis": {"statements": 1, "round_trips": 1, "transactions": 0, "redis": 1},
        "sqlite": {"statements": 3, "round_trips": 0, "transactions": 3, "redis": 0},
    },
    "nonce": {
        "postgres": {"statements": 2, "round_trips": 4, "transactions": 1, "redis": 0},
        "postgres+redis": {"statements": 1, "round_trips": 1, "transactions": 0, "redis": 1},
        "sqlite": {"statements": 2, "round_trips": 0, "transactions": 2, "redis": 0},
    },
}


@pytest.fixture(params=["sqlite", "postgres", "postgres+redis"])
def stores(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app_settings_extra(request: pytest.FixtureRequest, stores: str) -> dict[str, Any]:
    if stores == "sqlite":
        return {}
    extra: dict[str, Any] = {
        "database_url": _fresh_postgres_db(request.getfixturevalue("postgres_server_url"))
    }
    if stores.endswith("+redis"):
        extra["redis_url"] = request.getfixturevalue("redis_url")
    return extra


class _Trace:
    """Statements, round trips and transactions run on THIS thread while the block runs."""

    def __init__(self, app: Flask) -> None:
        database = app.extensions["posture"].core.database
        self.engine = database.engine
        self.postgres = database.is_postgres
        # The version read runs on the driver, in the autocommit pool: one checkout, one read.
        self.autocommit = database.autocommit_engine if database.is_postgres else None
        self.thread = threading.get_ident()
        self.statements: list[str] = []
        self.round_trips = 0  # PostgreSQL only (SQLite has none)
        self.transactions = 0
        self.redis = 0
        self._send = redis.connection.AbstractConnection.send_packed_command

    def _idle(self, conn: Any) -> tuple[bool, bool]:
        dbapi = conn.connection.dbapi_connection
        idle = dbapi.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        return idle, bool(dbapi.autocommit)

    def _stmt(self, conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        self.statements.append(statement.split("\n")[0][:80])
        if self.postgres:
            idle, autocommit = self._idle(conn)
            self.round_trips += 1 + (1 if idle and not autocommit else 0)  # + psycopg's BEGIN

    def _autocommit_read(self, *_: Any) -> None:
        if threading.get_ident() == self.thread:
            self.statements.append("SELECT version (autocommit)")
            self.round_trips += 1

    def _begin(self, _c: Any) -> None:
        if threading.get_ident() == self.thread and not self.postgres:
            self.transactions += 1

    def _commit(self, conn: Any) -> None:
        if threading.get_ident() != self.thread or not self.postgres:
            return
        idle, _autocommit = self._idle(conn)
        if not idle:  # psycopg sends COMMIT only for a transaction that ran a statement
            self.round_trips += 1
            self.transactions += 1

    def __enter__(self) -> _Trace:
        event.listen(self.engine, "before_cursor_execute", self._stmt)
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "commit", self._commit)
        if self.autocommit is not None:
            event.listen(self.autocommit, "checkout", self._autocommit_read)
        trace, send = self, self._send

        def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            if threading.get_ident() == trace.thread:
                trace.redis += 1
            send(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        redis.connection.AbstractConnection.send_packed_command = self._send  # type: ignore[method-assign]
        event.remove(self.engine, "before_cursor_execute", self._stmt)
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "commit", self._commit)
        if self.autocommit is not None:
            event.remove(self.autocommit, "checkout", self._autocommit_read)

    def within(self, budget: dict[str, int]) -> None:
        got = {
            "statements": len(self.statements),
            "round_trips": self.round_trips,
            "transactions": self.transactions,
            "redis": self.redis,
        }
        assert all(got[k] <= budget[k] for k in budget), (got, budget, self.statements)


def _decide(app: Flask, dev: EnrolledDevice, token: str) -> Any:
    nonce = api_nonce(app, token)["nonce"]
    body = {
        "user": "alice",
        "client_id": "payroll",
        "device_id": dev.device_id,
        "device_proof": dev.login_proof(audience=AUDIENCE, nonce=nonce),
    }
    return app.test_client().post(URL, json=body, headers=bearer(token))


def test_a_warm_decision_stays_within_the_budget(app: Flask, stores: str) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    # The enrolment's and check-in's events drop the device's read-model entries when the
    # relay delivers them: publish them now, or a late delivery empties the warmed cache.
    app.extensions["posture"].core.relay.drain()
    token = issue(app)
    for _ in range(2):  # warms the read model (the first one links the identity: a write)
        assert _decide(app, dev, token).json["outcome"] != "block"
    with _Trace(app) as trace:
        nonce = api_nonce(app, token)["nonce"]
    trace.within(BUDGET["nonce"][stores])
    body = {
        "user": "alice",
        "client_id": "payroll",
        "device_id": dev.device_id,
        "device_proof": dev.login_proof(audience=AUDIENCE, nonce=nonce),
    }
    with _Trace(app) as trace:
        answer = app.test_client().post(URL, json=body, headers=bearer(token))
    assert answer.get_json()["outcome"] != "block"
    trace.within(BUDGET["decision"][stores])
    # ... and the decision was audited (durable when the response returned).
    with app.extensions["posture"].core.storage.unit_of_work() as uow:
        outcomes = [
            e.outcome for e in uow.audit.recent(dev.device_id) if e.action == "access.decision"
        ]
    assert len(outcomes) == 3
    # The nonce is single use and the proof is not replayable, whatever the stores.
    again = app.test_client().post(URL, json=body, headers=bearer(token)).get_json()
    assert again["outcome"] == "block" and again["reasons"][0]["code"] == "nonce_invalid"


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


def test_a_certificate_revoked_alone_refuses_the_next_proof(app: Flask) -> None:
    # The proof's identity comes from the read model: a revocation that touches only the
    # certificates row bumps device:<id> too (migration 0007_perf_decision_certs).
    dev = _device(app, Platform.LINUX, DeviceTraits())
    token = issue(app)
    assert _decide(app, dev, token).json["outcome"] != "block"  # identity cached
    core = app.extensions["posture"].core
    with core.database.transaction() as conn:
        conn.execute(update(certificates).values(revoked_at=datetime.now(UTC)))
    answer = _decide(app, dev, token).json
    assert answer["outcome"] == "block", answer
    assert answer["reasons"][0]["code"] == RevokedCertificate.reason, answer


def test_a_wiped_device_is_refused_on_the_next_proof(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    token = issue(app)
    assert _decide(app, dev, token).json["outcome"] != "block"
    core = app.extensions["posture"].core
    with core.database.transaction() as conn:
        conn.execute(update(devices).where(devices.c.id == dev.device_id).values(status="wiped"))
    answer = _decide(app, dev, token).json
    assert answer["outcome"] == "block"
    assert answer["reasons"][0]["code"] == DeviceNotActive.reason, answer


def test_a_forged_proof_does_not_spend_the_nonce(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    token = issue(app)
    assert _decide(app, dev, token).json["outcome"] != "block"  # warm: identity cached
    nonce = api_nonce(app, token)["nonce"]
    forged = DeviceKey.generate().login_proof(dev.device_id, AUDIENCE, nonce)
    body = {"user": "alice", "client_id": "payroll", "device_id": dev.device_id}
    refused = app.test_client().post(
        URL, json={**body, "device_proof": forged}, headers=bearer(token)
    )
    assert refused.get_json()["reasons"][0]["code"] == BadSignature.reason
    # The signature did not hold: the nonce is still live for the real device.
    real = dev.login_proof(audience=AUDIENCE, nonce=nonce)
    answer = app.test_client().post(URL, json={**body, "device_proof": real}, headers=bearer(token))
    assert answer.get_json()["outcome"] != "block", answer.get_json()


def test_an_unknown_kid_is_refused_and_not_cached(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    token = issue(app)
    nonce = api_nonce(app, token)["nonce"]
    ghost = DeviceKey.generate().login_proof("dev-ghost", AUDIENCE, nonce)
    body = {"user": "alice", "client_id": "payroll", "device_proof": ghost}
    answer = app.test_client().post(URL, json=body, headers=bearer(token)).get_json()
    assert answer["outcome"] == "block"
    assert answer["reasons"][0]["code"] == UnknownDevice.reason, answer
    cache = read_model_of(app.extensions["posture"].core).cache
    assert cache.get(("identity", "dev-ghost"), (0,)) is MISS
    assert dev.device_id  # the real device is untouched


def test_after_the_worker_start_warm_up_a_first_decision_stays_within_the_budget(
    app: Flask, stores: str
) -> None:
    # The served worker's warm-up (posture_gateway/access/warm_start.py), forced here: the
    # device's identity, record, state and its owner come from the bulk read, so the first
    # decision this process makes for the device costs only the version read.
    dev = _device(app, Platform.LINUX, DeviceTraits())
    app.extensions["posture"].core.relay.drain()  # no late invalidation after the warm-up
    token = issue(app)
    for _ in range(2):  # the first links the identity (a directory write), then all cached
        assert _decide(app, dev, token).json["outcome"] != "block"
    cache = read_model_of(app.extensions["posture"].core).cache
    for kind in ("identity", "device", "device_state"):
        cache.drop((kind, dev.device_id))
    cache.drop_matching(lambda name: isinstance(name, tuple) and name[0] == "user")
    thread = init_read_model_warm(app, force=True)
    assert thread is not None
    thread.join(30)
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
    trace.within(BUDGET["decision"][stores])


def test_the_warm_up_runs_only_in_served_workers_and_a_failure_is_not_fatal(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(SERVE_WORKER_ENV, raising=False)
    assert init_read_model_warm(app) is None  # tests, CLI commands: never
    dev = _device(app, Platform.LINUX, DeviceTraits())
    token = issue(app)
    reads = read_model_of(app.extensions["posture"].core).reads

    def broken(limit: int) -> None:
        raise OperationalError("SELECT ...", {}, Exception("connection lost"))

    monkeypatch.setattr(reads, "warm", broken)
    monkeypatch.setenv(SERVE_WORKER_ENV, "1")
    with caplog.at_level(logging.ERROR, logger="posture_gateway.access.warm_start"):
        thread = init_read_model_warm(app)
        assert thread is not None
        thread.join(30)
    assert "read model warm-up failed" in caplog.text
    assert _decide(app, dev, token).json["outcome"] != "block"  # the miss path, as before
