"""Asking a device to check in now: the request, its bound and its audit trail.

The gateway (the remediation page's "Check again") asks for a fresh posture of one device.
:meth:`CheckinNow.request` publishes ``device.checkin_requested`` on the event bus, so the
process holding the device's long-poll (``GET /mdm/v1/commands/wait``, any process on a
shared Redis bus) ends that wait with ``ended: "checkin_requested"``, and the agent checks in
at once (:mod:`mdm_core.device.long_poll`, :mod:`mdm_core.agent.agent`). A device not waiting
right now is remembered for a short while by every process that saw the request, so a wait
it opens soon after ends at once the same way.

Bounded and audited: at most ``limit`` requests per device per ``window`` (the shared rate
limiter: Redis or the SQL table), refused beyond (:class:`CheckinNowRefused`, nothing sent);
each request sent or refused leaves an audit entry ``device.checkin_requested`` with the
actor. A bus that is down raises :class:`~mdm_core.domain.infra_errors.InfraError` (the caller
falls back to the device's periodic check-in; nothing is granted by a request either way).

The embedded default's bus is per process, while ``posture serve`` runs 2 workers on one
SQLite file: a wait held by the other worker would never hear the event. There, the wait
also looks for the request's audit entry about once a second
(:func:`requested_since`; ``mdm_core.api.checkin_views``), so the request reaches it anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mdm_core.bus.events import DomainEvent, EventBus
from mdm_core.domain.errors import MdmError
from mdm_core.ratelimit.limiter import RateLimiter
from mdm_core.storage.uow import Storage

__all__ = [
    "CHECKIN_REQUESTED",
    "CheckinNow",
    "CheckinNowRefused",
    "DEFAULT_LIMIT",
    "DEFAULT_WINDOW",
    "requested_since",
]

#: Bus event: please check in now (payload ``device_id``, ``actor``).
CHECKIN_REQUESTED = "device.checkin_requested"
#: Requests per device per window.
DEFAULT_LIMIT = 5
DEFAULT_WINDOW = timedelta(minutes=1)
AUDIT_ACTION = "device.checkin_requested"


class CheckinNowRefused(MdmError):
    """Too many check-in requests for this device: wait for its periodic check-in."""

    reason = "checkin_request_limited"
    status = 429


class CheckinNow:
    """Sends bounded, audited check-in requests to devices over the event bus."""

    def __init__(
        self,
        bus: EventBus,
        storage: Storage,
        limiter: RateLimiter,
        *,
        limit: int = DEFAULT_LIMIT,
        window: timedelta = DEFAULT_WINDOW,
    ) -> None:
        if bus is None or storage is None or limiter is None:
            raise ValueError("CheckinNow needs a bus, the storage and a rate limiter")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._bus = bus
        self._storage = storage
        self._limiter = limiter
        self.limit = limit
        self.window = window

    def request(self, device_id: str, *, actor: str) -> None:
        """Ask ``device_id`` to check in now; raises :class:`CheckinNowRefused` over the
        limit, ``InfraError`` when the limiter or the bus is down (audited either way)."""
        if not device_id:
            raise ValueError("device_id is required")
        allowed = self._limiter.hit("checkin-now:" + device_id, self.limit, self.window)
        if not allowed:
            self._audit(actor, device_id, "refused", {"reason": CheckinNowRefused.reason})
            raise CheckinNowRefused(
                f"at most {self.limit} check-in requests per device per "
                f"{int(self.window.total_seconds())} s"
            )
        try:
            self._bus.publish(
                DomainEvent(
                    type=CHECKIN_REQUESTED,
                    subject=device_id,
                    payload={"device_id": device_id, "actor": actor},
                )
            )
        except Exception as exc:
            self._audit(actor, device_id, "failed", {"reason": type(exc).__name__})
            raise
        self._audit(actor, device_id, "sent", {})

    def _audit(self, actor: str, device_id: str, outcome: str, detail: dict[str, str]) -> None:
        with self._storage.unit_of_work() as uow:
            uow.audit.record(actor, AUDIT_ACTION, device_id, outcome, detail)


def requested_since(storage: Storage, device_id: str, since: datetime) -> bool:
    """Whether a check-in request for ``device_id`` was sent at or after ``since`` (its
    audit entry; the cross-process signal where the bus is not shared)."""
    with storage.unit_of_work() as uow:
        entries = uow.audit.recent(device_id, limit=20)
    floor = since if since.tzinfo else since.replace(tzinfo=UTC)
    for entry in entries:
        at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=UTC)
        if at < floor:
            return False  # newest first: nothing newer is left
        if entry.action == AUDIT_ACTION and entry.outcome == "sent":
            return True
    return False
