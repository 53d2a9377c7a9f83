"""The PostureCache contract, run against the in-process cache and the Redis cache."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mdm_core.posture.cache import CachedPosture, InProcessPostureCache, PostureCache
from mdm_core.redis_backends.client import connect_redis
from mdm_core.redis_backends.posture_cache import RedisPostureCache

MINUTE = timedelta(minutes=1)


def posture(
    compliance: str = "compliant", *, os_version: str = "17.4", device: str = "d"
) -> CachedPosture:
    return CachedPosture(
        posture=f'{{"os_version":"{os_version}","device":"{device}","é":true}}'.encode(),
        collected_at=datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=UTC),
        received_at=datetime(2026, 11, 23, 10, 0, 1, tzinfo=timezone(timedelta(hours=2))),
        compliance=compliance,
    )


CacheFactory = Callable[[], PostureCache]


@pytest.fixture(params=["inprocess", "redis"])
def make_cache(request: pytest.FixtureRequest) -> Iterator[CacheFactory]:
    """Builds caches over one medium: one process (inprocess) or one Redis (redis)."""
    if request.param == "inprocess":
        shared = InProcessPostureCache()
        yield lambda: shared
        return
    redis_url: str = request.getfixturevalue("redis_url")
    client = connect_redis(redis_url)
    prefix = f"test:cache:{uuid.uuid4().hex}:"
    try:
        yield lambda: RedisPostureCache(client, prefix=prefix)
    finally:
        client.close()


@pytest.fixture
def cache(make_cache: CacheFactory) -> PostureCache:
    return make_cache()


def test_unknown_device_is_a_miss(cache: PostureCache) -> None:
    assert cache.get("never-seen") is None


def test_put_then_get_returns_an_equal_value(cache: PostureCache) -> None:
    value = posture()
    cache.put("dev-1", value, MINUTE)
    got = cache.get("dev-1")
    assert got == value
    assert got is not None
    assert got.posture == value.posture  # byte for byte
    assert got.received_at.utcoffset() == timedelta(hours=2)


def test_put_replaces_the_previous_value(cache: PostureCache) -> None:
    cache.put("dev-1", posture("compliant"), MINUTE)
    cache.put("dev-1", posture("noncompliant", os_version="16.0"), MINUTE)
    got = cache.get("dev-1")
    assert got is not None
    assert got.compliance == "noncompliant"
    assert b"16.0" in got.posture


def test_invalidate_forgets_and_unknown_ids_are_fine(cache: PostureCache) -> None:
    cache.put("dev-1", posture(), MINUTE)
    cache.put("dev-2", posture(device="2"), MINUTE)
    cache.invalidate("dev-1")
    cache.invalidate("dev-1")
    cache.invalidate("never-seen")
    assert cache.get("dev-1") is None
    assert cache.get("dev-2") == posture(device="2")


def test_entries_expire_after_their_ttl(cache: PostureCache) -> None:
    cache.put("short", posture(), timedelta(milliseconds=150))
    cache.put("long", posture(), MINUTE)
    assert cache.get("short") is not None
    time.sleep(0.35)
    assert cache.get("short") is None
    assert cache.get("long") is not None


def test_device_ids_do_not_collide(cache: PostureCache) -> None:
    ids = ["a", "a:", "A", "a b", "ä", "a\x00", "posture:cache:v1:a", "x" * 300]
    for i, device_id in enumerate(ids):
        cache.put(device_id, posture(device=str(i)), MINUTE)
    for i, device_id in enumerate(ids):
        assert cache.get(device_id) == posture(device=str(i))


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(microseconds=999), -MINUTE])
def test_bad_ttl_is_refused_and_changes_nothing(cache: PostureCache, ttl: timedelta) -> None:
    cache.put("dev-1", posture("compliant"), MINUTE)
    with pytest.raises(ValueError, match="ttl"):
        cache.put("dev-1", posture("noncompliant"), ttl)
    got = cache.get("dev-1")
    assert got is not None and got.compliance == "compliant"


@pytest.mark.parametrize("device_id", ["", None, 42])
def test_bad_device_id_is_refused(cache: PostureCache, device_id: object) -> None:
    with pytest.raises(ValueError, match="device_id"):
        cache.get(device_id)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device_id"):
        cache.put(device_id, posture(), MINUTE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device_id"):
        cache.invalidate(device_id)  # type: ignore[arg-type]


def test_only_cached_posture_values_are_accepted(cache: PostureCache) -> None:
    with pytest.raises(ValueError, match="CachedPosture"):
        cache.put("dev-1", {"compliance": "compliant"}, MINUTE)  # type: ignore[arg-type]
    assert cache.get("dev-1") is None


def test_a_value_put_by_one_instance_is_seen_and_invalidated_by_another(
    make_cache: CacheFactory,
) -> None:
    """Several gateway processes share one cache: an invalidation reaches all of them."""
    a, b = make_cache(), make_cache()
    a.put("dev-1", posture(), MINUTE)
    assert b.get("dev-1") == posture()
    b.invalidate("dev-1")
    assert a.get("dev-1") is None
