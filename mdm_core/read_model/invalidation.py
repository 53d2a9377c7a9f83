"""Domain events drop read-model entries early; a lost bus connection drops them all.

Correctness never depends on this module: every decision checks the versions of what it
reads (:mod:`mdm_core.read_model.versions`). Events only free entries as soon as the change
is known (memory, and a refetch moved off the next decision's path is not needed: the
version check refetches anyway), and after the bus reports a gap or a reconnect the whole
cache is dropped (resync) rather than trusted.

Events about a device (``device.*``, ``posture.*``, ``compliance.*``: subject = device id)
drop that device's entries; directory and user events drop every user entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

from mdm_core.bus.events import DomainEvent, EventBus
from mdm_core.read_model.cache import VersionedCache

__all__ = ["attach_invalidation", "DEVICE_EVENT_PREFIXES", "USER_ENTRY_KINDS"]

log = logging.getLogger(__name__)

DEVICE_EVENT_PREFIXES = ("device.", "posture.", "compliance.")
#: Entry kinds that depend on the directory (dropped by directory and user events).
USER_ENTRY_KINDS = frozenset({"user", "resolve"})


def _kind(name: Hashable) -> object:
    return name[0] if isinstance(name, tuple) and name else None


def attach_invalidation(bus: EventBus, cache: VersionedCache[object]) -> Callable[[], None]:
    """Subscribe ``cache`` to ``bus``; returns the unsubscribe function."""

    def on_event(event: DomainEvent) -> None:
        if event.type.startswith(DEVICE_EVENT_PREFIXES):
            subject = event.subject
            cache.drop(("device_state", subject))
            cache.drop(("device", subject))
            cache.drop(("identity", subject))
        elif event.type.startswith(("directory.", "user.")):
            cache.drop_matching(lambda n: _kind(n) in USER_ENTRY_KINDS)

    def resync() -> None:
        log.info("event bus gap or reconnect: dropping the read model (resync)")
        cache.clear()

    add_gap_listener = getattr(bus, "add_gap_listener", None)
    if callable(add_gap_listener):
        add_gap_listener(resync)
    return bus.subscribe("*", on_event)
