"""Bus events drop read-model entries early; a lost Redis connection drops them all (resync).

On the in-process bus and on a real Redis behind a proxy that cuts the connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from mdm_core.bus.events import InProcessBus
from mdm_core.read_model.cache import MISS, VersionedCache
from mdm_core.read_model.invalidation import attach_invalidation
from mdm_core.redis_backends.bus import RedisEventBus
from mdm_core.redis_backends.client import connect_redis
from tests.contracts.test_event_bus import ev
from tests.unit.mdm_core.cut_proxy import CutProxy


def _filled() -> VersionedCache[object]:
    cache: VersionedCache[object] = VersionedCache()
    cache.put(("device_state", "dev-1"), (1,), "posture of dev-1")
    cache.put(("device", "dev-1"), (1,), "record of dev-1")
    cache.put(("device_state", "dev-2"), (1,), "posture of dev-2")
    cache.put(("user", "u-1"), (1,), "alice")
    cache.put(("resolve", "alice@idp"), (1,), "u-1")
    cache.put(("token", "abc"), (1,), {"client_id": "okta"})
    return cache


def test_device_events_drop_that_device_only() -> None:
    bus = InProcessBus()
    cache = _filled()
    attach_invalidation(bus, cache)
    bus.publish(ev("posture.changed", subject="dev-1"))
    assert cache.get(("device_state", "dev-1"), (1,)) is MISS
    assert cache.get(("device", "dev-1"), (1,)) is MISS
    assert cache.get(("device_state", "dev-2"), (1,)) == "posture of dev-2"
    assert cache.get(("user", "u-1"), (1,)) == "alice"


def test_directory_events_drop_every_user_entry_and_nothing_else() -> None:
    bus = InProcessBus()
    cache = _filled()
    attach_invalidation(bus, cache)
    bus.publish(ev("directory.membership_changed", subject="g-1"))
    assert cache.get(("user", "u-1"), (1,)) is MISS
    assert cache.get(("resolve", "alice@idp"), (1,)) is MISS
    assert cache.get(("device_state", "dev-1"), (1,)) == "posture of dev-1"
    assert cache.get(("token", "abc"), (1,)) == {"client_id": "okta"}


def test_unrelated_events_drop_nothing() -> None:
    bus = InProcessBus()
    cache = _filled()
    attach_invalidation(bus, cache)
    bus.publish(ev("command.state_changed", subject="cmd-1"))
    assert len(cache) == 6


@pytest.fixture
def proxy(redis_url: str) -> Iterator[CutProxy]:
    parsed = urlparse(redis_url)
    p = CutProxy(parsed.hostname or "127.0.0.1", parsed.port or 6379)
    try:
        yield p
    finally:
        p.close()


def test_a_lost_redis_connection_drops_the_whole_cache_once_back(proxy: CutProxy) -> None:
    client = connect_redis(f"redis://127.0.0.1:{proxy.port}/0", timeout=1.0)
    bus = RedisEventBus(
        client, stream=f"test:rm:{time.time_ns()}", block_ms=200, backoff_initial=0.05,
        backoff_max=0.2,
    )  # fmt: skip
    cache = _filled()
    try:
        attach_invalidation(bus, cache)
        proxy.cut()
        deadline = time.monotonic() + 5
        while bus.read_failures < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert bus.read_failures >= 1
        assert len(cache) == 6  # kept while cut off (decisions still check versions)
        proxy.restore()
        deadline = time.monotonic() + 5
        while len(cache) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(cache) == 0  # resynchronised, not trusted
    finally:
        bus.close()
        client.close()
