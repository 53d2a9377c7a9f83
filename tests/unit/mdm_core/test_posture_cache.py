"""CachedPosture encoding and validation, the in-process bound, and Redis failure paths."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from mdm_core.domain.infra_errors import InfraCorrupt, InfraError, InfraUnavailable
from mdm_core.posture.cache import CachedPosture, InProcessPostureCache
from mdm_core.redis_backends.client import connect_redis
from mdm_core.redis_backends.posture_cache import RedisPostureCache
from tests.contracts.test_posture_cache import posture
from tests.services import free_port

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_json_round_trip_is_exact() -> None:
    value = posture("quarantined")
    assert CachedPosture.from_json(value.to_json()) == value


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"posture": "not bytes"}, "bytes"),
        ({"posture": b"\xff\xfe"}, "UTF-8"),
        ({"collected_at": datetime(2026, 1, 1)}, "collected_at"),  # naive  # noqa: DTZ001
        ({"received_at": "2026-01-01T00:00:00+00:00"}, "received_at"),
        ({"compliance": "COMPLIANT"}, "compliance"),
        ({"compliance": "allow"}, "compliance"),
        ({"compliance": ""}, "compliance"),
    ],
)
def test_cached_posture_validates(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "posture": b"{}",
        "collected_at": NOW,
        "received_at": NOW,
        "compliance": "compliant",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        CachedPosture(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b"\xff",
        b'{"v":2,"posture":"{}","collected_at":"2026-01-01T00:00:00+00:00",'
        b'"received_at":"2026-01-01T00:00:00+00:00","compliance":"compliant"}',
        b'{"v":1,"posture":"{}","collected_at":"2026-01-01T00:00:00+00:00",'
        b'"received_at":"2026-01-01T00:00:00+00:00","compliance":"yes"}',
        b'{"v":1,"posture":"{}","collected_at":"2026-01-01T00:00:00",'
        b'"received_at":"2026-01-01T00:00:00+00:00","compliance":"compliant"}',
        b'{"v":1,"posture":{},"collected_at":"2026-01-01T00:00:00+00:00",'
        b'"received_at":"2026-01-01T00:00:00+00:00","compliance":"compliant"}',
        b'{"v":1,"collected_at":"2026-01-01T00:00:00+00:00",'
        b'"received_at":"2026-01-01T00:00:00+00:00","compliance":"compliant"}',
        b'{"v":1,"posture":"{}","collected_at":"yesterday",'
        b'"received_at":"2026-01-01T00:00:00+00:00","compliance":"compliant"}',
    ],
)
def test_undecodable_values_are_corrupt_never_a_value(raw: bytes) -> None:
    with pytest.raises(InfraCorrupt) as info:
        CachedPosture.from_json(raw)
    assert info.value.reason == "infra_corrupt"


def test_in_process_cache_is_bounded_least_recently_used_first() -> None:
    cache = InProcessPostureCache(max_entries=3)
    for name in "abc":
        cache.put(name, posture(device=name), timedelta(minutes=1))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", posture(device="d"), timedelta(minutes=1))
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(n) is not None for n in "acd"] == [True, True, True]


def test_in_process_expiry_follows_the_clock_to_the_millisecond() -> None:
    clock = FakeClock()
    cache = InProcessPostureCache(clock=clock)
    cache.put("a", posture(), timedelta(seconds=10))
    clock.now += 9.999
    assert cache.get("a") is not None
    clock.now += 0.001
    assert cache.get("a") is None
    assert len(cache) == 0  # expired entries are dropped when seen


def test_in_process_rejects_a_zero_bound() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        InProcessPostureCache(max_entries=0)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect_redis(redis_url)
    try:
        yield c
    finally:
        c.close()


def test_redis_corrupt_value_raises_infra_corrupt(client: redis.Redis) -> None:
    prefix = f"test:cache:{uuid.uuid4().hex}:"
    cache = RedisPostureCache(client, prefix=prefix)
    client.set(prefix + "dev-1", b'{"v":1,"compliance":"compliant"}')
    with pytest.raises(InfraCorrupt):
        cache.get("dev-1")


def test_redis_stores_json_with_a_server_side_ttl(client: redis.Redis) -> None:
    prefix = f"test:cache:{uuid.uuid4().hex}:"
    cache = RedisPostureCache(client, prefix=prefix)
    cache.put("dev-1", posture(), timedelta(seconds=30))
    assert client.get(prefix + "dev-1") == posture().to_json()
    assert 29_000 < int(client.pttl(prefix + "dev-1")) <= 30_000


def test_redis_down_raises_infra_unavailable_for_every_operation() -> None:
    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    cache = RedisPostureCache(dead)
    try:
        calls: list[Callable[[], object]] = [
            lambda: cache.get("dev-1"),
            lambda: cache.put("dev-1", posture(), timedelta(minutes=1)),
            lambda: cache.invalidate("dev-1"),
        ]
        for call in calls:
            with pytest.raises(InfraUnavailable) as info:
                call()
            assert isinstance(info.value, InfraError)
            assert info.value.backend == "redis"
    finally:
        dead.close()


def test_redis_constructor_checks_its_client(redis_url: str, client: redis.Redis) -> None:
    no_timeout = redis.Redis.from_url(redis_url, socket_timeout=None)
    try:
        with pytest.raises(ValueError, match="socket_timeout"):
            RedisPostureCache(no_timeout)
        with pytest.raises(ValueError, match="prefix"):
            RedisPostureCache(client, prefix="")
    finally:
        no_timeout.close()
