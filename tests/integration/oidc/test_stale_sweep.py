# ruff: noqa: F811 - the fixtures imported from test_refresh_revocation are parameters here
"""The stale-posture sweep on SQLite and PostgreSQL, on a real login's sessions and tokens.

A device that logged in (real gate, enrolled device, the shipped policies: ``max_posture_age``
1h for baseline, 30m report-only) and then stops checking in: the sweep, run at a clock past
its policies' age, blocks it, revokes its SSO session, refresh and access tokens (refresh
``invalid_grant``, introspection inactive, userinfo 401), writes ``compliance.changed`` and
``access.revoked`` once, and the live-credentials gauge stays 0. A fresh device, an already
blocked one, a device under a report-only policy only, and a sweep whose unit of work fails
are left as they were; two sweepers (lease or no lease) handle each device once.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.staleness import LEASE_NAME, StaleSweep, SweepResult
from mdm_core.simulator.reports import DeviceTraits
from mdm_core.storage.compliance import ComplianceRecord, ComplianceState
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import compliance_state, outbox, posture_latest
from posture_gateway.observability.live_credentials import (
    noncompliant_devices_with_live_credentials,
    silent_cutoff,
)
from posture_gateway.oidc.server import EXTENSION_KEY, OIDCProvider
from posture_gateway.oidc.tables import gateway_sso_sessions
from posture_gateway.settings import Settings
from tests.integration.oidc.test_live_credentials_gauge import scraped
from tests.integration.oidc.test_refresh_revocation import (  # noqa: F401 - fixtures
    ROOT,
    TEST_ACCESS,
    Session,
    _core,
    app,
    ios,
)

LATER = timedelta(hours=2)  # past every shipped max_posture_age (1h, 30m)


def sweeper(app: Flask, at: Callable[[], datetime], **kwargs: Any) -> StaleSweep:
    core = _core(app)
    return StaleSweep(core.storage, core.policies.current, clock=at, **kwargs)


def later() -> datetime:
    return datetime.now(UTC) + LATER


def go_silent(app: Flask, device_id: str, by: timedelta = LATER) -> None:
    """The device stopped checking in ``by`` ago: its latest report is that old."""
    p = posture_latest
    with _core(app).database.engine.begin() as conn:
        row = conn.execute(
            select(p.c.received_at, p.c.collected_at).where(p.c.device_id == device_id)
        ).one()
        conn.execute(
            update(p)
            .where(p.c.device_id == device_id)
            .values(received_at=row.received_at - by, collected_at=row.collected_at - by)
        )


def silent_gauge(app: Flask) -> int:
    core = _core(app)
    now = datetime.now(UTC)
    cutoff = silent_cutoff(core.policies.current(), now)
    assert cutoff is not None
    return noncompliant_devices_with_live_credentials(core.database, now, cutoff)


def events(app: Flask, device_id: str) -> list[tuple[str, dict[str, Any]]]:
    with _core(app).database.engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.type, outbox.c.payload)
            .where(outbox.c.subject == device_id)
            .order_by(outbox.c.id)
        ).all()
    return [(r.type, r.payload) for r in rows]


def live_sessions(app: Flask, device_id: str) -> int:
    with _core(app).database.engine.connect() as conn:
        return len(
            conn.execute(
                select(gateway_sso_sessions.c.id_hash).where(
                    gateway_sso_sessions.c.device_id == device_id,
                    gateway_sso_sessions.c.revoked_at.is_(None),
                )
            ).all()
        )


def verdict(app: Flask, device_id: str) -> Any:
    with _core(app).database.engine.connect() as conn:
        return conn.execute(
            select(compliance_state).where(compliance_state.c.device_id == device_id)
        ).one_or_none()


def alive(session: Session) -> bool:
    return bool(session.introspect(session.tokens["refresh_token"], "refresh_token")["active"])


def test_silent_device_is_blocked_and_revoked(ios: Session, app: Flask) -> None:
    assert alive(ios) and live_sessions(app, ios.device_id) == 1
    before = events(app, ios.device_id)
    go_silent(app, ios.device_id)
    db = _core(app).database
    # Silent past every policy's age (+ grace): the gauge counts it before the sweep...
    assert silent_gauge(app) == 1
    assert scraped(app) == 1
    assert noncompliant_devices_with_live_credentials(db) == 0  # (no cutoff: not counted)
    result = sweeper(app, lambda: datetime.now(UTC)).run_once()
    assert result is not None and result.blocked == [ios.device_id]
    assert result.credentials_revoked >= 1
    # Everything the login obtained is dead: refresh, introspection, userinfo, SSO session.
    ios.assert_all_dead()
    assert live_sessions(app, ios.device_id) == 0
    assert ios.revoked_reasons() == {"posture_stale"}
    row = verdict(app, ios.device_id)
    assert (row.state, row.outcome) == ("noncompliant", "block")
    assert any(r["code"] == "posture_stale" for r in row.reasons)
    new = events(app, ios.device_id)[len(before) :]
    assert [t for t, _ in new] == ["compliance.changed", "access.revoked"]
    changed, revoked = new[0][1], new[1][1]
    assert changed["cause"] == "posture_stale"
    assert (changed["outcome"], changed["previous_outcome"]) == ("block", "allow")
    assert revoked["reason"] == "posture_stale" and revoked["sessions"] >= 1
    # The device's status is untouched: a fresh check-in lets it in again.
    assert ios.status() is DeviceStatus.ACTIVE
    # ... and the sweep brings it back to 0.
    assert silent_gauge(app) == 0
    assert scraped(app) == 0
    assert noncompliant_devices_with_live_credentials(db) == 0


def test_fresh_device_is_untouched(ios: Session, app: Flask) -> None:
    before = events(app, ios.device_id)
    result = sweeper(app, lambda: datetime.now(UTC) + timedelta(minutes=10)).run_once()
    assert result is not None and result.blocked == [] and result.examined == 0
    assert alive(ios) and live_sessions(app, ios.device_id) == 1
    assert events(app, ios.device_id) == before
    assert verdict(app, ios.device_id).outcome == "allow"
    assert silent_gauge(app) == 0


def test_already_blocked_device_is_not_revoked_again(ios: Session, app: Flask) -> None:
    sweep = sweeper(app, later)
    first = sweep.run_once()
    assert first is not None and first.blocked == [ios.device_id]
    after_first = events(app, ios.device_id)
    again = sweep.run_once()
    other = sweeper(app, later, holder="other").sweep()  # a fresh sweeper, from the oldest
    assert again is not None and again.blocked == [] and again.examined == 0
    assert other.blocked == [] and other.examined == 0
    assert events(app, ios.device_id) == after_first  # no duplicate events


def test_a_device_recorded_as_blocked_is_not_read(ios: Session, app: Flask) -> None:
    now = datetime.now(UTC)
    with _core(app).storage.unit_of_work() as uow:
        uow.compliance.put_state(
            ComplianceRecord(
                device_id=ios.device_id,
                state=ComplianceState.NONCOMPLIANT,
                outcome="block",
                reasons=[],
                policy_ids=["baseline-critical"],
                evaluated_at=now,
            )
        )
    before = events(app, ios.device_id)
    result = sweeper(app, later).sweep()
    assert result.examined == 0 and result.blocked == []
    assert events(app, ios.device_id) == before


@pytest.mark.parametrize("lease", [True, False])
def test_two_sweepers_handle_each_device_once(ios: Session, app: Flask, lease: bool) -> None:
    before = events(app, ios.device_id)
    sweeps = [sweeper(app, later, holder=f"w{i}") for i in range(2)]
    results: list[SweepResult | None] = [None, None]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = sweeps[i].run_once() if lease else sweeps[i].sweep()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    done = [r for r in results if r is not None]
    if lease:
        assert len(done) == 1  # one held the lease, the other did nothing
    blocked = [d for r in done for d in r.blocked]
    assert blocked == [ios.device_id]
    new = [t for t, _ in events(app, ios.device_id)[len(before) :]]
    assert new == ["compliance.changed", "access.revoked"]


def test_lease_is_released_on_stop(ios: Session, app: Flask) -> None:
    first = sweeper(app, later, holder="first")
    assert first.run_once() is not None
    second = sweeper(app, later, holder="second")
    assert second.run_once() is None  # first holds the lease
    first.stop()
    with _core(app).storage.unit_of_work() as uow:
        assert LEASE_NAME not in uow.leases.holders()
    assert second.run_once() is not None


def test_store_error_rolls_back_everything(
    ios: Session, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revocation fails inside the sweep's unit of work: the verdict, the event and
    every revocation roll back; a later sweep does the whole job."""
    # The sweep records its verdict through the compliance hook's record_verdict.
    import mdm_core.policy.compliance_hook as staleness

    before = events(app, ios.device_id)

    def broken(*_a: Any, **_k: Any) -> int:
        raise RuntimeError("database went away mid-revocation")

    monkeypatch.setattr(staleness, "end_device_access", broken)
    with pytest.raises(RuntimeError):
        sweeper(app, later).sweep()
    assert verdict(app, ios.device_id).outcome == "allow"
    assert events(app, ios.device_id) == before
    assert alive(ios) and live_sessions(app, ios.device_id) == 1
    monkeypatch.undo()
    result = sweeper(app, later).sweep()
    assert result.blocked == [ios.device_id]
    ios.assert_all_dead()


def test_unavailable_policy_set_skips_the_sweep(ios: Session, app: Flask) -> None:
    from mdm_core.policy.errors import PolicySetUnavailable

    def unavailable() -> Any:
        raise PolicySetUnavailable("no valid policy set")

    core = _core(app)
    result = StaleSweep(core.storage, unavailable, clock=later).sweep()
    assert result.skipped == "no_policy_set" and result.blocked == []
    assert alive(ios)


def test_paging_reaches_every_device(app: Flask, provider: OIDCProvider) -> None:
    """A batch of 1: each sweep takes the next page; every silent device is reached."""
    first = Session(app, provider, ios_platform())
    first.check_in(DeviceTraits())
    first.login()
    second = Session(app, provider, ios_platform())
    second.check_in(DeviceTraits())
    second.login()
    sweep = sweeper(app, later, batch=1)
    blocked: list[str] = []
    for _ in range(3):
        result = sweep.run_once()
        assert result is not None
        blocked += result.blocked
    assert sorted(blocked) == sorted([first.device_id, second.device_id])
    first.assert_all_dead()
    second.assert_all_dead()


def ios_platform() -> Any:
    from mdm_core.posture.model import Platform

    return Platform.IOS


# ---- policies: only what the evaluator blocks for staleness --------------------------------

REPORT_ONLY_ONLY = """
kind: CompliancePolicy
id: only-report
mode: report-only
assign: {}
max_posture_age: 5m
rules:
  - id: encrypted
    severity: high
    storage_encrypted: required
    remediation: Turn on disk encryption.
"""

NO_MAX_AGE = """
kind: CompliancePolicy
id: no-max-age
mode: enforce
assign: {}
rules:
  - id: encrypted
    severity: high
    storage_encrypted: required
    remediation: Turn on disk encryption.
"""


@pytest.fixture
def custom_app(
    request: pytest.FixtureRequest, settings: Settings, database: Database, tmp_path: Path
) -> Iterator[Flask]:
    from posture_gateway.app import create_app

    policies = tmp_path / "custom-policies"
    shutil.copytree(ROOT / "policies", policies)
    shutil.rmtree(policies / "compliance")
    (policies / "compliance").mkdir()
    (policies / "compliance" / "only.yaml").write_text(request.param, encoding="utf-8")
    with (policies / "access.yaml").open("a", encoding="utf-8") as out:
        out.write(TEST_ACCESS)
    built = create_app(
        settings.model_copy(update={"database_url": database.url, "policy_dir": policies})
    )
    built.config["TESTING"] = False
    yield built
    built.extensions["posture"].core.close()


@pytest.mark.parametrize("custom_app", [REPORT_ONLY_ONLY], indirect=True)
def test_report_only_staleness_blocks_nothing(custom_app: Flask) -> None:
    provider = custom_app.extensions[EXTENSION_KEY]
    session = Session(custom_app, provider, ios_platform())
    session.check_in(DeviceTraits())
    result = sweeper(custom_app, later).run_once()
    assert result is not None and result.skipped == "no_enforced_policy"
    assert result.blocked == []


@pytest.mark.parametrize("custom_app", [NO_MAX_AGE], indirect=True)
def test_policy_without_max_posture_age_uses_the_default_hour(custom_app: Flask) -> None:
    provider = custom_app.extensions[EXTENSION_KEY]
    session = Session(custom_app, provider, ios_platform())
    session.check_in(DeviceTraits())
    session.login()
    # 40 minutes of silence: fresh for the default hour, untouched.
    quiet = sweeper(custom_app, lambda: datetime.now(UTC) + timedelta(minutes=40)).run_once()
    assert quiet is not None and quiet.blocked == [] and quiet.examined == 0
    assert alive(session)
    # Past the hour: blocked and revoked.
    late = sweeper(custom_app, later, holder="late").sweep()
    assert late.blocked == [session.device_id]
    session.assert_all_dead()


# ---- wiring: posture serve's workers start it, nothing else does -----------------------------


def test_started_only_in_served_workers(
    monkeypatch: pytest.MonkeyPatch, ios: Session, app: Flask
) -> None:
    from posture_gateway.directory.ldap_schedule import SERVE_WORKER_ENV
    from posture_gateway.sso.stale_sweep import EXTENSION, init_stale_sweep

    assert EXTENSION not in app.extensions  # a test app: not a served worker
    go_silent(app, ios.device_id)
    monkeypatch.setenv(SERVE_WORKER_ENV, "1")
    sweep = init_stale_sweep(app)  # what create_app does in a served worker
    assert sweep is not None and app.extensions[EXTENSION] is sweep
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while sweep.last_result is None and datetime.now(UTC) < deadline:
            threading.Event().wait(0.1)
        assert sweep.last_result is not None and sweep.last_result.blocked == [ios.device_id]
    finally:
        sweep.stop()
    with _core(app).storage.unit_of_work() as uow:
        assert LEASE_NAME not in uow.leases.holders()  # released at stop


def test_a_check_in_between_the_page_and_the_unit_of_work_wins(
    ios: Session, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page said stale, but the device checked in before its unit of work: the unit of
    work re-reads under the row lock and leaves the device alone."""
    go_silent(app, ios.device_id)
    original = StaleSweep._block_if_stale

    def checked_in_first(self: StaleSweep, uow: Any, device_id: str, *args: Any) -> Any:
        ios.check_in(DeviceTraits())  # commits before this unit of work takes its lock
        return original(self, uow, device_id, *args)

    monkeypatch.setattr(StaleSweep, "_block_if_stale", checked_in_first)
    sweep = sweeper(app, lambda: datetime.now(UTC))
    result = sweep.sweep()
    assert result.examined == 1 and result.blocked == []
    assert alive(ios) and verdict(app, ios.device_id).outcome == "allow"


def test_the_candidate_query_uses_the_index(app: Flask) -> None:
    """SQLite's plan for the page query reads ``ix_posture_latest_received_at`` (no scan of
    ``posture_latest``); the statement is the store's own. PostgreSQL plans by table
    statistics (with a handful of rows it starts from ``devices``), so there the test checks
    the index the planner needs at scale exists on ``posture_latest (received_at, ...)``."""
    core = _core(app)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_a: Any) -> None:
        if "FROM posture_latest JOIN devices" in statement:
            captured.append((statement, params))

    from sqlalchemy import event

    event.listen(core.database.engine, "before_cursor_execute", capture)
    try:
        with core.storage.unit_of_work() as uow:
            uow.stale_postures.candidates(datetime.now(UTC), after=None, limit=500)
    finally:
        event.remove(core.database.engine, "before_cursor_execute", capture)
    assert captured, "the candidate query did not run"
    statement, params = captured[0]
    with core.database.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        if core.database.dialect == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + statement, params)
            text = " | ".join(str(row[-1]) for row in cursor.fetchall())
            assert "SCAN posture_latest" not in text, text
        else:
            cursor.execute(
                "SELECT indexname || ' ' || indexdef FROM pg_indexes"
                " WHERE tablename = 'posture_latest'"
            )
            text = " | ".join(str(row[0]) for row in cursor.fetchall())
            assert "(received_at" in text, text
            raw.rollback()
    assert "ix_posture_latest_received_at" in text, text


def test_disabled_is_never_started(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stale_sweep.enabled: false`` (SQLite app): not started, even in a served worker."""
    from posture_gateway.app import create_app
    from posture_gateway.directory.ldap_schedule import SERVE_WORKER_ENV
    from posture_gateway.sso.stale_sweep import EXTENSION, init_stale_sweep

    off = create_app(
        settings.model_copy(
            update={"stale_sweep": settings.stale_sweep.model_copy(update={"enabled": False})}
        )
    )
    monkeypatch.setenv(SERVE_WORKER_ENV, "1")  # after create_app: no read-model warm-up thread
    try:
        assert EXTENSION not in off.extensions and init_stale_sweep(off) is None
    finally:
        off.extensions["posture"].core.close()
