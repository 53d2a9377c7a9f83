"""The long-poll registry and check-in requests: a waiting device's wait ends at once; a
request for a device not waiting is remembered for a short while, taken once, then gone."""

from __future__ import annotations

import time

from mdm_core.bus.events import DomainEvent, InProcessBus
from mdm_core.device.checkin_now import CHECKIN_REQUESTED
from mdm_core.device.long_poll import WaitRegistry


def _ask(bus: InProcessBus, device_id: str) -> None:
    bus.publish(
        DomainEvent(type=CHECKIN_REQUESTED, subject=device_id, payload={"device_id": device_id})
    )


def test_a_request_ends_only_that_devices_wait() -> None:
    bus = InProcessBus()
    registry = WaitRegistry(bus, max_waits=2)
    mine, other = registry.open("d-1"), registry.open("d-2")
    _ask(bus, "d-1")
    assert mine.wait(0) == "checkin_requested"
    assert other.wait(0) == "timeout"
    assert not registry.take_request("d-1")  # it ended a wait: nothing left to take


def test_a_request_between_waits_is_taken_once_within_its_ttl() -> None:
    bus = InProcessBus()
    registry = WaitRegistry(bus, request_ttl_s=0.2)
    _ask(bus, "d-1")
    assert registry.take_request("d-1")
    assert not registry.take_request("d-1")  # once
    _ask(bus, "d-1")
    time.sleep(0.3)
    assert not registry.take_request("d-1")  # too old: the device checked in meanwhile or not
