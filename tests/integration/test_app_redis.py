"""With ``redis_url`` set the app's event bus is Redis Streams: events cross processes."""

from __future__ import annotations

import threading
from pathlib import Path

from mdm_core.bus.events import DomainEvent
from mdm_core.redis_backends.bus import RedisEventBus
from posture_gateway.app import create_app
from posture_gateway.settings import Settings


def test_two_apps_on_one_redis_share_events(tmp_path: Path, redis_url: str) -> None:
    def make(name: str):
        return create_app(
            Settings(
                data_dir=tmp_path / "data",  # two processes of one deployment
                dev_mode=True,
                redis_url=redis_url,
                database_url=f"sqlite:///{tmp_path}/shared.sqlite3",
            )
        )

    first, second = make("a"), make("b")
    try:
        bus_a = first.extensions["posture"].core.bus
        bus_b = second.extensions["posture"].core.bus
        assert isinstance(bus_a, RedisEventBus) and isinstance(bus_b, RedisEventBus)
        got = threading.Event()
        seen: list[DomainEvent] = []

        def handler(event: DomainEvent) -> None:
            seen.append(event)
            got.set()

        bus_b.subscribe("posture.changed", handler)
        bus_a.publish(DomainEvent(type="posture.changed", subject="dev-1", payload={"x": 1}))
        assert got.wait(10), "the event did not cross from one app to the other"
        assert seen[0].subject == "dev-1" and seen[0].payload == {"x": 1}
    finally:
        first.extensions["posture"].core.close()
        second.extensions["posture"].core.close()
