"""RedisEventBus beyond the shared contract: outages, backoff, lost positions, bad input."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import redis

from mdm_core.bus.events import DomainEvent
from mdm_core.domain.infra_errors import InfraUnavailable
from mdm_core.redis_backends.bus import RedisEventBus
from mdm_core.redis_backends.client import connect_redis
from tests.contracts.test_event_bus import Recorder, ev
from tests.services import free_port
from tests.unit.mdm_core.cut_proxy import CutProxy


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = connect_redis(redis_url)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def stream() -> str:
    return f"test:events:{uuid.uuid4().hex}"


@pytest.fixture
def proxy(redis_url: str) -> Iterator[CutProxy]:
    parsed = urlparse(redis_url)
    p = CutProxy(parsed.hostname or "127.0.0.1", parsed.port or 6379)
    try:
        yield p
    finally:
        p.close()


def test_events_published_while_a_reader_is_cut_off_arrive_after_it_reconnects(
    client: redis.Redis, stream: str, proxy: CutProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The reason for Streams: a reader's short disconnect loses nothing."""
    reader_client = connect_redis(f"redis://127.0.0.1:{proxy.port}/0", timeout=1.0)
    reader = RedisEventBus(
        reader_client, stream=stream, block_ms=200, backoff_initial=0.05, backoff_max=0.4
    )
    publisher = RedisEventBus(client, stream=stream)
    rec = Recorder()
    try:
        reader.subscribe("posture", rec)
        publisher.publish(ev("posture.changed", n=0))
        rec.wait_count(1)

        proxy.cut()
        for i in range(1, 6):
            publisher.publish(ev("posture.changed", n=i))
        deadline = time.monotonic() + 5
        while reader.read_failures < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reader.read_failures >= 2
        assert [e.payload["n"] for e in rec.events] == [0]  # really cut off

        proxy.restore()
        got = rec.wait_count(6)
        assert [e.payload["n"] for e in got] == [0, 1, 2, 3, 4, 5]
        assert reader.gaps == 0
        assert "event bus reader error" in caplog.text
    finally:
        reader.close()
        publisher.close()
        reader_client.close()


def test_reader_backs_off_instead_of_spinning_while_redis_is_unreachable(
    client: redis.Redis, stream: str, proxy: CutProxy
) -> None:
    reader_client = connect_redis(f"redis://127.0.0.1:{proxy.port}/0", timeout=1.0)
    reader = RedisEventBus(
        reader_client, stream=stream, block_ms=200, backoff_initial=0.1, backoff_max=0.8
    )
    try:
        reader.subscribe("*", Recorder())
        proxy.cut()
        time.sleep(2.0)
        # Delays (jittered to half..full): 0.05-0.1, 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.4-0.8, ...
        # so 2 s hold at most about 10 attempts; a spinning loop would make thousands.
        assert 2 <= reader.read_failures <= 12
    finally:
        proxy.restore()
        reader.close()
        reader_client.close()


def test_close_returns_promptly_while_backing_off(stream: str) -> None:
    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    bus = RedisEventBus(dead, stream=stream, block_ms=200, backoff_initial=5, backoff_max=5)
    bus._cursor = (0, 0)  # start the reader without a reachable Redis (white-box)
    bus._thread = threading.Thread(target=bus._run, daemon=True)
    bus._thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    bus.close()
    assert time.monotonic() - started < 1.0
    assert not bus._thread.is_alive()
    dead.close()


def test_stream_that_went_back_after_an_outage_is_followed_and_reported(
    client: redis.Redis, stream: str, proxy: CutProxy
) -> None:
    """Failover to a replica that lagged (or a restart without persistence): the stream now
    ends below our position. The reader must move back, or it would never see new entries."""
    reader_client = connect_redis(f"redis://127.0.0.1:{proxy.port}/0", timeout=1.0)
    gap_seen = threading.Event()
    reader = RedisEventBus(
        reader_client,
        stream=stream,
        block_ms=200,
        backoff_initial=0.05,
        backoff_max=0.2,
        on_gap=gap_seen.set,
    )
    rec = Recorder()

    def raw(event: DomainEvent) -> dict[Any, Any]:
        return {b"event": json.dumps(event.to_json()).encode()}

    try:
        reader.subscribe("posture", rec)
        client.xadd(stream, raw(ev("posture.changed", n=0)))
        rec.wait_count(1)
        proxy.cut()
        client.delete(stream)
        client.xadd(stream, raw(ev("posture.changed", n=99)), id="1-1")
        deadline = time.monotonic() + 5
        while reader.read_failures < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        proxy.restore()
        assert gap_seen.wait(5)
        client.xadd(stream, raw(ev("posture.changed", n=1)), id="2-0")  # below the old cursor
        got = rec.wait_count(2)
        assert [e.payload["n"] for e in got] == [0, 1]
        assert reader.gaps == 1
    finally:
        reader.close()
        reader_client.close()


def test_lost_position_is_reported_as_a_gap(client: redis.Redis, stream: str) -> None:
    gap_seen = threading.Event()
    bus = RedisEventBus(client, stream=stream, block_ms=200, on_gap=gap_seen.set)
    release = threading.Event()
    rec = Recorder()

    def slow(event: DomainEvent) -> None:
        rec(event)
        if event.payload["n"] == 0:
            release.wait(5)

    try:
        bus.subscribe("posture", slow)
        bus.publish(ev("posture.changed", n=0))
        rec.wait_count(1)  # the reader is now stuck in the handler for n=0
        for i in range(1, 5):
            bus.publish(ev("posture.changed", n=i))
        client.xtrim(stream, maxlen=1, approximate=False)  # n=0..3 are trimmed away
        release.set()
        got = rec.wait_count(2)
        assert gap_seen.wait(5)
        assert bus.gaps == 1
        assert [e.payload["n"] for e in got] == [0, 4]
    finally:
        release.set()
        bus.close()


def test_undecodable_entries_are_skipped(
    client: redis.Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = RedisEventBus(client, stream=stream, block_ms=200)
    rec = Recorder()
    try:
        bus.subscribe("*", rec)
        client.xadd(stream, {b"event": b"{not json"})
        client.xadd(stream, {b"other": b"field"})
        client.xadd(stream, {b"event": b'{"type": "x"}'})  # missing fields
        client.xadd(stream, {b"event": b"\xff\xfe"})
        bus.publish(ev("posture.changed"))
        (got,) = rec.wait_count(1)
        assert got.type == "posture.changed"
        with caplog.at_level(logging.ERROR):
            assert caplog.text.count("skipped undecodable entry") == 4
    finally:
        bus.close()


def test_publish_and_subscribe_raise_infra_unavailable_when_redis_is_down(stream: str) -> None:
    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    bus = RedisEventBus(dead, stream=stream, block_ms=200)
    try:
        with pytest.raises(InfraUnavailable) as info:
            bus.publish(ev("posture.changed"))
        assert info.value.reason == "infra_unavailable"
        with pytest.raises(InfraUnavailable):
            bus.subscribe("*", Recorder())
    finally:
        bus.close()
        dead.close()


def test_stream_is_bounded(client: redis.Redis, stream: str) -> None:
    bus = RedisEventBus(client, stream=stream, maxlen=10)
    try:
        for i in range(1000):
            bus.publish(ev("posture.changed", n=i))
        # approximate trimming removes whole nodes (100 entries by default)
        assert client.xlen(stream) <= 10 + 100
    finally:
        bus.close()


def test_subscribe_after_close_raises(client: redis.Redis, stream: str) -> None:
    bus = RedisEventBus(client, stream=stream)
    bus.close()
    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe("*", Recorder())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream": ""}, "stream"),
        ({"maxlen": 0}, "maxlen"),
        ({"batch": 0}, "batch"),
        ({"block_ms": 0}, "block_ms"),
        ({"block_ms": 1000}, "socket timeout"),  # client timeout is 1 s
        ({"backoff_initial": 0}, "backoff"),
        ({"backoff_initial": 2, "backoff_max": 1}, "backoff"),
    ],
)
def test_constructor_rejects_bad_settings(
    client: redis.Redis, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RedisEventBus(client, **kwargs)  # type: ignore[arg-type]


def test_constructor_rejects_clients_without_timeouts_or_with_decoding(redis_url: str) -> None:
    no_timeout = redis.Redis.from_url(redis_url, socket_timeout=None)
    decoding = redis.Redis.from_url(redis_url, socket_timeout=1, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="socket_timeout"):
            RedisEventBus(no_timeout)
        with pytest.raises(ValueError, match="decode_responses"):
            RedisEventBus(decoding)
        with pytest.raises(ValueError, match="required"):
            RedisEventBus(None)  # type: ignore[arg-type]
    finally:
        no_timeout.close()
        decoding.close()
