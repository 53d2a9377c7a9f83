"""The SQL rate limiter beyond the contract: row layout, clock skew, long keys, purge, outages,
and the guard that turns its answers into refusals (counted, audited once, fail closed)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from mdm_core.domain.errors import LimiterUnavailable, RateLimited
from mdm_core.domain.infra_errors import InfraUnavailable
from mdm_core.ratelimit.guard import REFUSALS, RateGuard
from mdm_core.ratelimit.sql import SqlRateLimiter
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import audit_log, rate_limits
from mdm_core.storage.sql.uow import SqlStorage
from tests.contracts.test_rate_limiter import FakeClock

TEN_S = timedelta(seconds=10)


def _rows(db: Database) -> list[tuple[object, ...]]:
    with db.transaction() as conn:
        return [tuple(r) for r in conn.execute(select(rate_limits).order_by(rate_limits.c.key))]


def test_one_row_per_window_and_key_with_expiry(database: Database) -> None:
    clock = FakeClock()
    limiter = SqlRateLimiter(database, clock=clock)
    for _ in range(3):
        assert limiter.hit("alice", 10, TEN_S)
    clock.now += 10.0
    assert limiter.hit("alice", 10, TEN_S)
    (row,) = _rows(database)
    # window_ms, key, window index, current, previous, expires (2 windows after the last hit)
    assert row == (10_000, "alice", 100_001, 1, 3, 1_000_010_000 + 20_000)


def test_a_clock_behind_never_resets_the_count(database: Database) -> None:
    ahead, behind = FakeClock(1_000_020.0), FakeClock(1_000_000.0)
    assert [SqlRateLimiter(database, clock=ahead).hit("k", 3, TEN_S) for _ in range(3)] == [
        True
    ] * 3
    late = SqlRateLimiter(database, clock=behind)  # two windows behind the stored one
    assert late.hit("k", 3, TEN_S) is False
    assert late.allows("k", 3, TEN_S) is False


def test_long_keys_are_stored_hashed_and_still_separate(database: Database) -> None:
    limiter = SqlRateLimiter(database, clock=FakeClock())
    a, b = "u" * 300 + "a", "u" * 300 + "b"
    assert limiter.hit(a, 1, TEN_S) and not limiter.hit(a, 1, TEN_S)
    assert limiter.hit(b, 1, TEN_S)
    keys = [row[1] for row in _rows(database)]
    assert all(k.startswith("sha256:") and len(k) == 71 for k in keys) and len(keys) == 2


def test_idle_keys_are_purged(database: Database) -> None:
    clock = FakeClock()
    limiter = SqlRateLimiter(database, clock=clock, purge_every=3)
    limiter.hit("old", 5, TEN_S)
    clock.now += 25.0  # more than two windows later
    limiter.hit("new", 5, TEN_S)
    limiter.hit("new", 5, TEN_S)  # the third hit purges
    assert [row[1] for row in _rows(database)] == ["new"]
    assert limiter.purge() == 0


def test_database_down_raises_infra_unavailable(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/rl.sqlite3")
    db.migrate()
    limiter = SqlRateLimiter(db)
    with db.transaction() as conn:
        conn.execute(text("DROP TABLE rate_limits"))
    try:
        with pytest.raises(InfraUnavailable):
            limiter.hit("k", 5, TEN_S)
        with pytest.raises(InfraUnavailable):
            limiter.allows("k", 5, TEN_S)
    finally:
        db.dispose()


def test_constructor_and_argument_checks(sqlite_database: Database) -> None:
    with pytest.raises(ValueError):
        SqlRateLimiter(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="purge_every"):
        SqlRateLimiter(sqlite_database, purge_every=0)
    with pytest.raises(ValueError, match="too large"):
        SqlRateLimiter(sqlite_database).hit("k", 2**61, timedelta(days=1))


# --- the guard ------------------------------------------------------------------------------


def _audits(db: Database) -> int:
    with db.transaction() as conn:
        return conn.execute(
            select(func.count())
            .select_from(audit_log)
            .where(audit_log.c.action == "ratelimit.refused")
        ).scalar_one()


def test_guard_refuses_counts_and_audits_once_per_window(sqlite_database: Database) -> None:
    clock = FakeClock()
    guard = RateGuard(SqlRateLimiter(sqlite_database, clock=clock), SqlStorage(sqlite_database))
    before = REFUSALS.labels("enroll_source")._value.get()
    guard.hit("enroll_source", "t:src:1", 2, TEN_S, actor="source:1", subject="1")
    guard.hit("enroll_source", "t:src:1", 2, TEN_S, actor="source:1", subject="1")
    for _ in range(5):
        with pytest.raises(RateLimited) as info:
            guard.hit("enroll_source", "t:src:1", 2, TEN_S, actor="source:1", subject="1")
        assert info.value.retry_after == 10 and info.value.status == 429
    assert REFUSALS.labels("enroll_source")._value.get() == before + 5
    assert _audits(sqlite_database) == 1  # a flood of refusals is one record
    clock.now += 25.0
    guard.hit("enroll_source", "t:src:1", 2, TEN_S, actor="source:1", subject="1")


def test_failed_counts_each_failure_then_refuses_and_a_broken_limiter_is_503(
    sqlite_database: Database,
) -> None:
    """``failed``: the first ``limit`` failures are counted and pass through (the caller then
    answers its own 401); the next one is refused; a limiter that fails refuses too."""
    clock = FakeClock()
    guard = RateGuard(SqlRateLimiter(sqlite_database, clock=clock), SqlStorage(sqlite_database))
    for _ in range(3):
        guard.failed("admin_auth_source", "a:src:1", 3, TEN_S, actor="-", subject="1")
    with pytest.raises(RateLimited):
        guard.failed("admin_auth_source", "a:src:1", 3, TEN_S, actor="-", subject="1")
    guard.failed("admin_auth_source", "a:src:2", 3, TEN_S, actor="-", subject="2")  # its own
    clock.now += 25.0
    guard.failed("admin_auth_source", "a:src:1", 3, TEN_S, actor="-", subject="1")
    with sqlite_database.transaction() as conn:
        conn.execute(text("DROP TABLE rate_limits"))
    with pytest.raises(LimiterUnavailable):
        guard.failed("admin_auth_source", "a:src:3", 3, TEN_S, actor="-", subject="3")


def test_guard_fails_closed_when_the_limiter_fails(sqlite_database: Database) -> None:
    guard = RateGuard(SqlRateLimiter(sqlite_database), SqlStorage(sqlite_database))
    with sqlite_database.transaction() as conn:
        conn.execute(text("DROP TABLE rate_limits"))
    with pytest.raises(LimiterUnavailable) as info:
        guard.hit("enroll_source", "k", 5, TEN_S, actor="a", subject="s")
    assert info.value.status == 503


def test_a_limit_outside_the_closed_set_is_a_programming_error(sqlite_database: Database) -> None:
    """Metric labels stay bounded: a limit name not in LIMIT_NAMES is refused loudly."""
    guard = RateGuard(SqlRateLimiter(sqlite_database), SqlStorage(sqlite_database))
    guard.hit("enroll_source", "k", 1, TEN_S, actor="a", subject="s")
    with pytest.raises(ValueError, match="LIMIT_NAMES"):
        guard.hit("user:alice", "k", 1, TEN_S, actor="a", subject="s")
