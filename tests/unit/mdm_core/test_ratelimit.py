"""Rate limiters beyond the contract: the window rule, Redis keys, scripts and outages."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from mdm_core.domain.infra_errors import InfraUnavailable
from mdm_core.ratelimit.limiter import sliding_window_allows
from mdm_core.redis_backends.client import connect_redis
from mdm_core.redis_backends.rate_limiter import RedisRateLimiter
from tests.contracts.test_rate_limiter import FakeClock
from tests.services import free_port

TEN_S = timedelta(seconds=10)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect_redis(redis_url)
    try:
        yield c
    finally:
        c.close()


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "allowed"),
    [
        (0, 0, 0, True),
        (0, 9, 0, True),
        (0, 10, 0, False),
        (10, 0, 0, False),
        (10, 0, 1, False),  # 9.999 + 0 + 1 > 10
        (10, 0, 1000, True),  # 9 + 0 + 1 <= 10
        (10, 4, 5000, True),  # 5 + 4 + 1 = 10
        (10, 5, 5000, False),
    ],
)
def test_sliding_window_rule(previous: int, current: int, elapsed: int, allowed: bool) -> None:
    assert sliding_window_allows(previous, current, elapsed, 10_000, 10) is allowed


def test_redis_key_layout_expiry_and_old_windows_dropped(client: redis.Redis) -> None:
    clock = FakeClock()
    prefix = f"test:rl:{uuid.uuid4().hex}:"
    limiter = RedisRateLimiter(client, prefix=prefix, clock=clock)
    key = f"{prefix}10000:alice".encode()
    for _ in range(5):
        assert limiter.hit("alice", 10, TEN_S)
        clock.now += 10.0
    fields = {int(f) for f in client.hkeys(key)}
    assert fields == {100_003, 100_004}  # only the current and previous windows are kept
    assert 0 < int(client.pttl(key)) <= 20_000


def test_redis_limiter_survives_a_script_flush(client: redis.Redis) -> None:
    limiter = RedisRateLimiter(client, prefix=f"test:rl:{uuid.uuid4().hex}:")
    assert limiter.hit("k", 2, TEN_S)
    client.script_flush()
    assert limiter.hit("k", 2, TEN_S)
    assert not limiter.hit("k", 2, TEN_S)


def test_redis_down_raises_infra_unavailable() -> None:
    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    limiter = RedisRateLimiter(dead)
    try:
        with pytest.raises(InfraUnavailable) as info:
            limiter.hit("k", 5, TEN_S)
        assert info.value.reason == "infra_unavailable"
    finally:
        dead.close()


def test_redis_refuses_what_lua_cannot_count_exactly(client: redis.Redis) -> None:
    limiter = RedisRateLimiter(client, prefix=f"test:rl:{uuid.uuid4().hex}:")
    with pytest.raises(ValueError, match="too large"):
        limiter.hit("k", 2**40, timedelta(days=1))


def test_redis_constructor_checks_its_client(redis_url: str, client: redis.Redis) -> None:
    no_timeout = redis.Redis.from_url(redis_url, socket_timeout=None)
    try:
        with pytest.raises(ValueError, match="socket_timeout"):
            RedisRateLimiter(no_timeout)
        with pytest.raises(ValueError, match="prefix"):
            RedisRateLimiter(client, prefix="")
    finally:
        no_timeout.close()
