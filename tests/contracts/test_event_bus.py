"""The EventBus contract, run against the in-process bus and the Redis Streams bus.

Delivery may be asynchronous (Redis), so tests wait for what they expect with a deadline.
To prove that something was *not* delivered, a test publishes a "barrier" event after it:
both buses deliver in publish order, so once the barrier arrived, the earlier event would
have arrived too.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import redis

from mdm_core.bus.events import DomainEvent, EventBus, InProcessBus
from mdm_core.redis_backends.bus import RedisEventBus
from mdm_core.redis_backends.client import connect_redis

WAIT = 5.0


class Recorder:
    """A handler that records what it receives and lets a test wait for it."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: DomainEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    @property
    def types(self) -> list[str]:
        with self._cond:
            return [e.type for e in self.events]

    def wait_for(self, predicate: Callable[[list[DomainEvent]], bool]) -> list[DomainEvent]:
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(self.events), timeout=WAIT)
            assert ok, f"timed out; received {[e.type for e in self.events]}"
            return list(self.events)

    def wait_count(self, n: int) -> list[DomainEvent]:
        return self.wait_for(lambda evs: len(evs) >= n)

    def wait_type(self, event_type: str) -> list[DomainEvent]:
        return self.wait_for(lambda evs: any(e.type == event_type for e in evs))


def ev(event_type: str, subject: str = "dev-1", **payload: object) -> DomainEvent:
    return DomainEvent(type=event_type, subject=subject, payload=dict(payload))


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = connect_redis(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def stream_name() -> str:
    return f"test:events:{uuid.uuid4().hex}"


BusFactory = Callable[[], EventBus]


@pytest.fixture(params=["inprocess", "redis"])
def make_bus(request: pytest.FixtureRequest) -> Iterator[BusFactory]:
    """Builds buses that share one medium: one process (inprocess) or one stream (redis)."""
    made: list[EventBus] = []
    if request.param == "inprocess":
        shared = InProcessBus()
        made.append(shared)

        def factory() -> EventBus:
            return shared

    else:
        client: redis.Redis = request.getfixturevalue("redis_client")
        stream: str = request.getfixturevalue("stream_name")

        def factory() -> EventBus:
            bus = RedisEventBus(client, stream=stream, block_ms=200)
            made.append(bus)
            return bus

    try:
        yield factory
    finally:
        for bus in made:
            bus.close()


@pytest.fixture
def bus(make_bus: BusFactory) -> EventBus:
    return make_bus()


def barrier(bus: EventBus, rec: Recorder) -> None:
    """Publish a barrier event and wait until ``rec`` (subscribed to it) has seen it."""
    bus.publish(ev("test.barrier"))
    rec.wait_type("test.barrier")


def test_exact_type_is_delivered_and_others_are_not(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe("posture.changed", rec)
    bus.subscribe("test.barrier", rec)
    bus.publish(ev("posture.reported"))
    bus.publish(ev("posture.changed", foo=1))
    barrier(bus, rec)
    assert rec.types == ["posture.changed", "test.barrier"]


def test_star_matches_every_type(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe("*", rec)
    for t in ["device.enrolled", "posture.changed", "x", "a.b.c"]:
        bus.publish(ev(t))
    rec.wait_count(4)
    assert rec.types == ["device.enrolled", "posture.changed", "x", "a.b.c"]


@pytest.mark.parametrize(
    ("event_type", "delivered"),
    [
        ("posture", True),
        ("posture.changed", True),
        ("posture.changed.deep", True),
        ("postures.x", False),
        ("posture_changed", False),
        ("posturex", False),
        ("device.posture", False),
        ("Posture.changed", False),
        ("", False),
    ],
)
def test_prefix_matching_is_on_dot_boundaries(
    bus: EventBus, event_type: str, delivered: bool
) -> None:
    rec = Recorder()
    bus.subscribe("posture", rec)
    bus.subscribe("test.barrier", rec)
    bus.publish(ev(event_type))
    barrier(bus, rec)
    assert rec.types == ([event_type] if delivered else []) + ["test.barrier"]


def test_several_handlers_each_receive_once(bus: EventBus) -> None:
    a, b = Recorder(), Recorder()
    bus.subscribe("posture", a)
    bus.subscribe("posture.changed", b)
    bus.publish(ev("posture.changed"))
    assert len(a.wait_count(1)) == 1
    assert len(b.wait_count(1)) == 1


def test_event_fields_survive_the_trip(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe("*", rec)
    sent = DomainEvent(
        type="posture.changed",
        subject="dev-ü-42",
        payload={"nested": {"list": [1, 2.5, None, True, "ß"]}, "n": 7},
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )
    bus.publish(sent)
    (got,) = rec.wait_count(1)
    assert got == sent


def test_only_events_published_after_subscribe_are_delivered(bus: EventBus) -> None:
    bus.publish(ev("posture.changed", n=1))
    rec = Recorder()
    bus.subscribe("posture", rec)
    bus.publish(ev("posture.changed", n=2))
    (got,) = rec.wait_count(1)
    time.sleep(0.1)
    assert [e.payload["n"] for e in rec.events] == [2]


def test_unsubscribe_stops_delivery(bus: EventBus) -> None:
    rec, guard = Recorder(), Recorder()
    unsubscribe = bus.subscribe("posture", rec)
    bus.subscribe("test.barrier", guard)
    bus.publish(ev("posture.changed", n=1))
    rec.wait_count(1)
    unsubscribe()
    bus.publish(ev("posture.changed", n=2))
    barrier(bus, guard)
    assert [e.payload["n"] for e in rec.events] == [1]


def test_unsubscribe_is_idempotent_and_only_removes_its_own_subscription(bus: EventBus) -> None:
    """The same handler subscribed twice: calling one unsubscriber twice leaves the other."""
    rec = Recorder()
    first = bus.subscribe("posture", rec)
    bus.subscribe("posture", rec)
    first()
    first()
    bus.publish(ev("posture.changed"))
    rec.wait_count(1)
    bus.publish(ev("posture.changed"))
    rec.wait_count(2)
    time.sleep(0.1)
    assert len(rec.events) == 2


def test_a_raising_handler_does_not_block_the_others(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    before, after = Recorder(), Recorder()

    def broken(event: DomainEvent) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe("posture", before)
    bus.subscribe("posture", broken)
    bus.subscribe("posture", after)
    bus.publish(ev("posture.changed", n=1))
    bus.publish(ev("posture.changed", n=2))
    assert [e.payload["n"] for e in before.wait_count(2)] == [1, 2]
    assert [e.payload["n"] for e in after.wait_count(2)] == [1, 2]
    assert "event handler failed for posture.changed" in caplog.text


def test_ordering_per_publisher(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe("seq", rec)
    for i in range(200):
        bus.publish(ev("seq.n", n=i))
    got = rec.wait_count(200)
    assert [e.payload["n"] for e in got] == list(range(200))


def test_publish_after_close_raises_and_close_is_idempotent(make_bus: BusFactory) -> None:
    bus = make_bus()
    rec = Recorder()
    bus.subscribe("*", rec)
    bus.close()
    bus.close()
    with pytest.raises(RuntimeError, match="closed"):
        bus.publish(ev("posture.changed"))
    assert rec.events == []


def test_handler_may_publish_reentrantly(bus: EventBus) -> None:
    rec = Recorder()

    def relay(event: DomainEvent) -> None:
        bus.publish(ev("compliance.changed", subject=event.subject))

    bus.subscribe("posture.changed", relay)
    bus.subscribe("compliance", rec)
    bus.publish(ev("posture.changed", subject="dev-9"))
    (got,) = rec.wait_count(1)
    assert got.subject == "dev-9"


def test_every_instance_receives_every_event(make_bus: BusFactory) -> None:
    """Several gateway processes each learn of every posture change (fan-out, not sharing)."""
    publisher, *readers = [make_bus() for _ in range(3)]
    recs = [Recorder() for _ in readers]
    for reader, rec in zip(readers, recs, strict=True):
        reader.subscribe("posture.changed", rec)
    for i in range(20):
        publisher.publish(ev("posture.changed", n=i))
    for rec in recs:
        assert [e.payload["n"] for e in rec.wait_count(20)] == list(range(20))


def test_cross_instance_both_directions(make_bus: BusFactory) -> None:
    a, b = make_bus(), make_bus()
    on_a, on_b = Recorder(), Recorder()
    a.subscribe("device", on_a)
    b.subscribe("device", on_b)
    a.publish(ev("device.enrolled", subject="from-a"))
    b.publish(ev("device.enrolled", subject="from-b"))
    for rec in (on_a, on_b):
        got = rec.wait_count(2)
        assert sorted(e.subject for e in got) == ["from-a", "from-b"]
