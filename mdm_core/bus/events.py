"""Domain events and the event-bus interface.

Owns the vocabulary of cross-package reactions (``device.enrolled``, ``posture.reported``,
``posture.changed``, ``command.state_changed``, ...) and the small :class:`EventBus` protocol
they travel on. Events are never published straight from a service: the service writes them
to the outbox in the same transaction as the state change they report
(:mod:`mdm_core.storage.outbox`), and :class:`mdm_core.bus.outbox_relay.OutboxRelay` moves them to
the bus. So a crash between the store and the bus loses nothing.

:class:`InProcessBus` is the embedded implementation; the Redis implementation lives beside
it and passes the same contract tests (``tests/contracts/test_event_bus.py``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = [
    "DomainEvent",
    "EventBus",
    "EventHandler",
    "InProcessBus",
    "EventType",
    "matches",
]

log = logging.getLogger(__name__)


class EventType:
    """Event type names (strings on the wire, constants in code)."""

    DEVICE_ENROLLED = "device.enrolled"
    DEVICE_RE_ENROLLED = "device.re_enrolled"
    CERTIFICATE_REVOKED = "device.certificate_revoked"
    POSTURE_REPORTED = "posture.reported"
    POSTURE_CHANGED = "posture.changed"
    COMPLIANCE_CHANGED = "compliance.changed"
    COMMAND_STATE_CHANGED = "command.state_changed"
    PROOF_REFUSED = "device.proof_refused"
    USER_OFFBOARDED = "user.offboarded"
    GROUP_MEMBERSHIP_CHANGED = "directory.membership_changed"
    # A directory source disabled an account, or no longer lists it (deleted there): the
    # offboarding job consumes both. Payload: user_id, username, source, reason.
    ACCOUNT_DISABLED = "directory.account_disabled"
    ACCOUNT_DELETED = "directory.account_deleted"
    #: One user's effective groups changed (subject: the user; payload: before / after).
    USER_GROUPS_CHANGED = "directory.user_groups_changed"
    #: Sessions and tokens revoked (subject: the device or user id; payload: scope
    #: device|user, user_id, device_id or None, reason, count, sessions).
    ACCESS_REVOKED = "access.revoked"


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Something that happened, as a fact. ``payload`` is JSON-serialisable."""

    type: str
    subject: str  # the aggregate it is about: a device id, a user id, a command id
    payload: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "subject": self.subject,
            "payload": self.payload,
            "occurred_at": self.occurred_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DomainEvent:
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            subject=str(data["subject"]),
            payload=dict(data.get("payload") or {}),
            occurred_at=datetime.fromisoformat(str(data["occurred_at"])),
        )


EventHandler = Callable[[DomainEvent], None]


class EventBus(Protocol):
    """Publish/subscribe for domain events.

    Contract: a handler subscribed to ``pattern`` receives every event published after it
    subscribed whose type equals ``pattern`` or starts with ``pattern + "."``; ``"*"`` matches
    every type. Delivery is at least once; handlers must be idempotent (events carry ``id``).
    A handler that raises is logged and does not stop delivery to the others.
    """

    def publish(self, event: DomainEvent) -> None:
        """Deliver ``event`` to the subscribers (synchronously or soon, per implementation)."""
        ...

    def subscribe(self, pattern: str, handler: EventHandler) -> Callable[[], None]:
        """Register ``handler``; returns a function that unsubscribes it."""
        ...

    def close(self) -> None:
        """Stop delivering and release resources. Publishing after close raises."""
        ...


def matches(pattern: str, event_type: str) -> bool:
    return pattern == "*" or event_type == pattern or event_type.startswith(pattern + ".")


class InProcessBus:
    """The embedded bus: synchronous delivery to handlers in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: list[tuple[str, EventHandler]] = []
        self._closed = False

    def publish(self, event: DomainEvent) -> None:
        if self._closed:
            raise RuntimeError("event bus is closed")
        with self._lock:
            handlers = [h for p, h in self._handlers if matches(p, event.type)]
        for handler in handlers:
            try:
                handler(event)
            except Exception:  # a broken subscriber must not block the others
                log.exception("event handler failed for %s %s", event.type, event.id)

    def subscribe(self, pattern: str, handler: EventHandler) -> Callable[[], None]:
        entry = (pattern, handler)
        with self._lock:
            self._handlers.append(entry)

        def unsubscribe() -> None:
            # Remove this very registration (by identity): comparing tuples by value would
            # let a second call remove another subscription of the same handler and pattern.
            with self._lock:
                for i, registered in enumerate(self._handlers):
                    if registered is entry:
                        del self._handlers[i]
                        break

        return unsubscribe

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._handlers.clear()
