"""Bounded long-polls: who may wait for commands, and waking them (``GET /commands/wait``).

A long-poll holds one of the WSGI server's request threads for as long as it waits, so an
unbounded number of them starves logins and check-ins (issue 7, finding 6: 40 waits from one
device froze the login page). :class:`WaitRegistry` keeps them bounded, per process:

- **at most one wait per device**: a device's new wait ends its previous one, which answers
  at once (``ended: "superseded"``). The new wait announces itself on the event bus
  (``device.wait_started``), so with a shared bus (Redis) a wait held by another process ends
  too; on the in-process bus only this process's waits are superseded (another process's wait
  ends at its own timeout, and still counts against that process's cap);
- **a global cap** (``max_waits``, a handful, well below the server's request threads): when
  every slot is taken :meth:`WaitRegistry.open` raises :class:`WaitCapacityExhausted`, which
  the view answers ``503`` with ``Retry-After`` at once; the agent then falls back to its
  periodic check-in;
- **a short longest wait** (``max_wait_s``): a longer requested timeout is shortened to it,
  so slots turn over.

One subscription to ``command.state_changed`` wakes the wait of the device a command was
queued for (not one subscription per request). One to ``device.checkin_requested``
(:mod:`mdm_core.device.checkin_now`) ends the device's wait with ``"checkin_requested"``: the
agent checks in at once. A request for a device with no wait open here is remembered for
``request_ttl_s``; a wait the device opens meanwhile ends at once the same way
(:meth:`WaitRegistry.take_request`), so a request landing between two waits is not lost.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mdm_core.bus.events import DomainEvent, EventBus, EventType
from mdm_core.device.checkin_now import CHECKIN_REQUESTED
from mdm_core.device.commands import CommandStatus
from mdm_core.domain.errors import MdmError

__all__ = [
    "DEFAULT_MAX_WAITS",
    "DEFAULT_MAX_WAIT_S",
    "LONG_POLL_KEY",
    "WAIT_STARTED",
    "Wait",
    "WaitCapacityExhausted",
    "WaitRegistry",
]

log = logging.getLogger(__name__)

#: Concurrent long-polls per process. ``posture serve`` runs 8 request threads per worker by
#: default, so at most 2 are ever held by waits and 6 stay free for logins and check-ins.
DEFAULT_MAX_WAITS = 2
#: The longest a wait is held (seconds); longer requests are shortened to this.
DEFAULT_MAX_WAIT_S = 25
#: Bus event: a device started a wait (payload ``device_id``, ``wait_id``, ``origin``).
WAIT_STARTED = "device.wait_started"
#: Where ``build_core`` keeps the registry: ``MdmCore.extras[LONG_POLL_KEY]``.
LONG_POLL_KEY = "long_poll"
#: How long a check-in request for a device that is not waiting is remembered (seconds).
REQUEST_TTL_S = 30.0
#: At most this many remembered requests per process (oldest forgotten first).
_MAX_REMEMBERED = 10_000


class WaitCapacityExhausted(MdmError):
    """Every long-poll slot of this process is taken: try again later, check in meanwhile."""

    reason = "long_poll_unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Wait:
    """One open long-poll of ``device_id``; :meth:`WaitRegistry.close` releases it."""

    device_id: str
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    _event: threading.Event = field(default_factory=threading.Event)
    # why it ended early: "command_queued", "checkin_requested", "superseded", "closed"
    ended: str | None = None

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self._event.set()

    def wait(self, timeout: float) -> str:
        """Block until ended or ``timeout`` seconds passed; the end reason or ``"timeout"``."""
        self._event.wait(timeout)
        return self.ended or "timeout"


class WaitRegistry:
    """The open waits of this process (thread-safe)."""

    def __init__(
        self,
        bus: EventBus,
        *,
        max_waits: int = DEFAULT_MAX_WAITS,
        max_wait_s: int = DEFAULT_MAX_WAIT_S,
        request_ttl_s: float = REQUEST_TTL_S,
    ) -> None:
        if bus is None:
            raise ValueError("WaitRegistry needs an event bus")
        if max_waits < 0:
            raise ValueError("max_waits must not be negative")
        if max_wait_s < 1:
            raise ValueError("max_wait_s must be at least 1")
        self.bus = bus
        self.max_waits = max_waits
        self.max_wait_s = max_wait_s
        self.request_ttl_s = request_ttl_s
        self._requested: dict[str, float] = {}  # device id -> when a request arrived
        self._origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._by_device: dict[str, Wait] = {}
        self._unsubscribe: list[Callable[[], None]] = [
            bus.subscribe(EventType.COMMAND_STATE_CHANGED, self._on_command),
            bus.subscribe(WAIT_STARTED, self._on_wait_started),
            bus.subscribe(CHECKIN_REQUESTED, self._on_checkin_requested),
        ]

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._by_device)

    def open(self, device_id: str) -> Wait:
        """A new wait for ``device_id``: ends the device's previous wait (it answers at once)
        and takes its slot; raises :class:`WaitCapacityExhausted` when every slot is taken."""
        wait = Wait(device_id)
        with self._lock:
            previous = self._by_device.get(device_id)
            if previous is None and len(self._by_device) >= self.max_waits:
                raise WaitCapacityExhausted(
                    "the server is holding as many long-polls as it allows; check in "
                    "periodically and try again later",
                    retry_after_s=self.max_wait_s,
                )
            self._by_device[device_id] = wait
        if previous is not None:
            previous.end("superseded")
        try:
            self.bus.publish(
                DomainEvent(
                    type=WAIT_STARTED,
                    subject=device_id,
                    payload={"device_id": device_id, "wait_id": wait.id, "origin": self._origin},
                )
            )
        except Exception:  # other processes' waits then end at their timeout; ours still works
            log.warning("could not announce the long-poll of %s", device_id, exc_info=True)
        return wait

    def take_request(self, device_id: str) -> bool:
        """Whether a check-in request for ``device_id`` arrived in the last
        ``request_ttl_s`` while it was not waiting here (forgotten once taken)."""
        with self._lock:
            at = self._requested.pop(device_id, None)
        return at is not None and time.monotonic() - at <= self.request_ttl_s

    def close(self, wait: Wait) -> None:
        """Release ``wait``'s slot (idempotent; a superseded wait's slot is already its
        successor's)."""
        with self._lock:
            if self._by_device.get(wait.device_id) is wait:
                del self._by_device[wait.device_id]

    def clamp(self, requested_s: int) -> int:
        """The wait actually held for a requested timeout (0 .. ``max_wait_s``)."""
        return max(0, min(requested_s, self.max_wait_s))

    def shutdown(self) -> None:
        """End every wait (they answer) and stop listening to the bus."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        with self._lock:
            waits, self._by_device = list(self._by_device.values()), {}
        for wait in waits:
            wait.end("closed")

    # ---- bus handlers ----------------------------------------------------------------------

    def _on_command(self, event: DomainEvent) -> None:
        payload = event.payload
        if payload.get("to") != CommandStatus.QUEUED:
            return
        with self._lock:
            wait = self._by_device.get(str(payload.get("device_id")))
        if wait is not None:
            wait.end("command_queued")

    def _on_checkin_requested(self, event: DomainEvent) -> None:
        device_id = str(event.payload.get("device_id") or event.subject)
        with self._lock:
            wait = self._by_device.get(device_id)
            if wait is None:
                self._requested[device_id] = time.monotonic()
                while len(self._requested) > _MAX_REMEMBERED:
                    del self._requested[next(iter(self._requested))]
        if wait is not None:
            wait.end("checkin_requested")

    def _on_wait_started(self, event: DomainEvent) -> None:
        payload = event.payload
        if payload.get("origin") == self._origin:
            return  # ours: already superseded locally in open()
        device_id = str(payload.get("device_id"))
        with self._lock:
            wait = self._by_device.get(device_id)
            if wait is None or wait.id == payload.get("wait_id"):
                return
            del self._by_device[device_id]
        wait.end("superseded")
