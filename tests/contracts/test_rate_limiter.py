"""The RateLimiter contract (sliding window counter), on the in-process, Redis and SQL limiters.

Most tests drive an injected clock so every backend can be held to the exact same counts;
one test runs on the real clocks (monotonic in process, Redis ``TIME`` on Redis, the process's
wall clock on SQL). The SQL limiter runs on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from mdm_core.ratelimit.limiter import RateLimiter
from mdm_core.ratelimit.sql import SqlRateLimiter
from mdm_core.redis_backends.client import connect_redis
from mdm_core.redis_backends.rate_limiter import RedisRateLimiter
from mdm_core.storage.sql.database import Database
from tests.conftest import _fresh_postgres_db

TEN_S = timedelta(seconds=10)


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


LimiterFactory = Callable[[Callable[[], float] | None], RateLimiter]


@pytest.fixture(params=["redis", "sql-sqlite", "sql-postgres"])
def make_limiter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LimiterFactory]:
    """``make(clock)`` gives limiters over one medium; ``None`` means the real clock."""
    if request.param.startswith("sql-"):
        if request.param == "sql-sqlite":
            url = f"sqlite:///{tmp_path}/rl.sqlite3"
        else:
            url = _fresh_postgres_db(request.getfixturevalue("postgres_server_url"))
        databases: list[Database] = []

        def sql(clock: Callable[[], float] | None) -> RateLimiter:
            db = Database(url)  # one engine per limiter: as separate processes would have
            db.migrate()
            databases.append(db)
            return SqlRateLimiter(db) if clock is None else SqlRateLimiter(db, clock=clock)

        try:
            yield sql
        finally:
            for db in databases:
                db.dispose()
        return
    client = connect_redis(request.getfixturevalue("redis_url"))
    prefix = f"test:rl:{uuid.uuid4().hex}:"
    try:
        yield lambda clock: RedisRateLimiter(client, prefix=prefix, clock=clock)
    finally:
        client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(make_limiter: LimiterFactory, clock: FakeClock) -> RateLimiter:
    return make_limiter(clock)


def hits(limiter: RateLimiter, n: int, key: str = "k", limit: int = 10) -> list[bool]:
    return [limiter.hit(key, limit, TEN_S) for _ in range(n)]


def test_allows_limit_hits_then_refuses(limiter: RateLimiter) -> None:
    assert hits(limiter, 12) == [True] * 10 + [False] * 2


def test_no_double_burst_across_a_window_boundary(limiter: RateLimiter, clock: FakeClock) -> None:
    """The reason for a sliding window: a fixed window would allow 10 more at 10.000 s."""
    clock.now = 1_000_009.999  # last millisecond of a window
    assert hits(limiter, 10) == [True] * 10
    clock.now = 1_000_010.0  # first millisecond of the next
    assert hits(limiter, 1) == [False]


def test_previous_window_counts_in_proportion_to_its_overlap(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    assert hits(limiter, 10) == [True] * 10  # window 0 full
    clock.now += 15.0  # halfway into window 1: window 0 weighs 5
    assert hits(limiter, 6) == [True] * 5 + [False]
    clock.now += 5.0  # start of window 2: window 1 (5 hits) weighs 5
    assert hits(limiter, 6) == [True] * 5 + [False]
    clock.now += 7.5  # three quarters into window 2: window 1 weighs 1.25
    assert hits(limiter, 5) == [True, True, True, False, False]  # 1.25 + 5 + 3 = 9.25


def test_refused_hits_are_not_counted_and_quiet_keys_recover(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    assert hits(limiter, 50) == [True] * 10 + [False] * 40
    clock.now += 20.0  # two windows later nothing overlaps any more
    assert hits(limiter, 11) == [True] * 10 + [False]


def test_keys_and_windows_are_counted_separately(limiter: RateLimiter) -> None:
    assert hits(limiter, 3, key="alice", limit=3) == [True] * 3
    assert hits(limiter, 1, key="alice", limit=3) == [False]
    assert hits(limiter, 3, key="bob", limit=3) == [True] * 3
    assert hits(limiter, 3, key="alice:", limit=3) == [True] * 3
    assert [limiter.hit("alice", 3, timedelta(seconds=60)) for _ in range(4)] == [True] * 3 + [
        False
    ]


def test_limit_of_one(limiter: RateLimiter, clock: FakeClock) -> None:
    assert hits(limiter, 2, limit=1) == [True, False]
    clock.now += 20.0
    assert hits(limiter, 1, limit=1) == [True]


@pytest.mark.parametrize(
    ("key", "limit", "window", "message"),
    [
        ("", 5, TEN_S, "key"),
        (None, 5, TEN_S, "key"),
        ("k", 0, TEN_S, "limit"),
        ("k", -1, TEN_S, "limit"),
        ("k", 2.5, TEN_S, "limit"),
        ("k", True, TEN_S, "limit"),
        ("k", 5, timedelta(0), "window"),
        ("k", 5, timedelta(microseconds=999), "window"),
        ("k", 5, -TEN_S, "window"),
    ],
)
def test_bad_arguments_are_refused_and_count_nothing(
    limiter: RateLimiter, key: object, limit: object, window: timedelta, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        limiter.hit(key, limit, window)  # type: ignore[arg-type]
    assert hits(limiter, 11) == [True] * 10 + [False]


def test_instances_share_the_count(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    """Several gateway processes enforce one limit together."""
    a, b = make_limiter(clock), make_limiter(clock)
    assert hits(a, 6) == [True] * 6
    assert hits(b, 5) == [True] * 4 + [False]
    assert hits(a, 1) == [False]


def test_concurrent_hits_never_exceed_the_limit(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(None)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [limiter.hit("burst", 50, timedelta(minutes=5)) for _ in range(20)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200
    assert results.count(True) == 50


def test_real_clock(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(None)
    window = timedelta(milliseconds=200)
    assert [limiter.hit("real", 3, window) for _ in range(4)] == [True, True, True, False]
    time.sleep(0.45)  # more than two windows: nothing overlaps
    assert limiter.hit("real", 3, window) is True


def test_allows_asks_without_counting(limiter: RateLimiter, clock: FakeClock) -> None:
    assert limiter.allows("fresh", 2, TEN_S) is True  # unknown key: allowed, nothing stored
    assert [limiter.allows("k", 2, TEN_S) for _ in range(5)] == [True] * 5
    assert hits(limiter, 1, limit=2) == [True]
    assert limiter.allows("k", 2, TEN_S) is True
    assert hits(limiter, 1, limit=2) == [True]
    assert limiter.allows("k", 2, TEN_S) is False
    assert hits(limiter, 1, limit=2) == [False]
    clock.now += 15.0  # halfway into the next window: the full previous one weighs 1
    assert limiter.allows("k", 2, TEN_S) is True
    assert hits(limiter, 2, limit=2) == [True, False]
    clock.now += 20.0
    assert limiter.allows("k", 2, TEN_S) is True


def test_allows_refuses_bad_arguments(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError, match="key"):
        limiter.allows("", 5, TEN_S)
    with pytest.raises(ValueError, match="limit"):
        limiter.allows("k", 0, TEN_S)
    with pytest.raises(ValueError, match="window"):
        limiter.allows("k", 5, timedelta(0))


def test_instances_agree_on_allows(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    a, b = make_limiter(clock), make_limiter(clock)
    assert hits(a, 3, limit=3) == [True] * 3
    assert b.allows("k", 3, TEN_S) is False
