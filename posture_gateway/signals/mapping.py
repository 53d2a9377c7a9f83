"""Which domain events become which Security Events, and with what event body.

| domain event (outbox)                         | SET event                          |
|-----------------------------------------------|------------------------------------|
| ``compliance.changed`` when compliant flips    | CAEP ``device-compliance-change``  |
| ``access.revoked``                            | CAEP ``session-revoked``           |
| ``directory.account_disabled`` / ``_deleted``, | RISC ``account-disabled``          |
| ``user.offboarded``                           |                                    |

:func:`signal_for` is pure: it returns the :class:`Signal` (event type, the user and device it
is about, the event body without the subject) or ``None`` for an event the transmitter does
not carry. CAEP 1.0 section 2 common claims: ``event_timestamp`` (the domain event's time),
``initiating_entity`` and ``reason_admin``. RISC ``account-disabled`` (RISC 1.0 section 2.3)
defines only ``reason`` (``hijacking`` | ``bulk-account``), neither of which describes an
offboarding or a directory disable, so it is omitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mdm_core.bus.events import DomainEvent, EventType
from posture_gateway.signals.vocabulary import (
    CAEP_DEVICE_COMPLIANCE_CHANGE,
    CAEP_SESSION_REVOKED,
    RISC_ACCOUNT_DISABLED,
)

__all__ = ["Signal", "signal_for", "SOURCE_TYPES"]

#: Domain event types the outbox listener looks at (anything else costs one set lookup).
SOURCE_TYPES = frozenset(
    {
        EventType.COMPLIANCE_CHANGED,
        EventType.ACCESS_REVOKED,
        EventType.ACCOUNT_DISABLED,
        EventType.ACCOUNT_DELETED,
        EventType.USER_OFFBOARDED,
    }
)

_COMPLIANT = "compliant"


@dataclass(frozen=True, slots=True)
class Signal:
    event_type: str
    user_id: str | None
    device_id: str | None
    body: dict[str, Any]
    complex_subject: bool = True  # CAEP: complex user+device; RISC: the user alone


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _ts(event: DomainEvent) -> int:
    return int(event.occurred_at.timestamp())


def _status(state: object) -> str:
    return "compliant" if state == _COMPLIANT else "not-compliant"


def _compliance(event: DomainEvent) -> Signal | None:
    p = event.payload
    previous, current = p.get("previous_state"), p.get("state")
    if previous is None or previous == "unknown":
        return None  # first evaluation: nothing flipped (CAEP needs previous_status)
    if (previous == _COMPLIANT) == (current == _COMPLIANT):
        return None  # noncompliant <-> quarantined, or a change of reasons only
    rules = [str(r) for r in p.get("failing_rules") or []][:10]
    text = f"device compliance is now {current}" + (
        f" (failing: {', '.join(rules)})" if rules else ""
    )
    return Signal(
        CAEP_DEVICE_COMPLIANCE_CHANGE,
        _str(p.get("user_id")),
        _str(p.get("device_id")) or event.subject,
        {
            "previous_status": _status(previous),
            "current_status": _status(current),
            "event_timestamp": _ts(event),
            "initiating_entity": "policy",
            "reason_admin": {"en": text},
        },
    )


def _revoked(event: DomainEvent) -> Signal | None:
    p = event.payload
    reason = str(p.get("reason") or "revoked")
    entity = "admin" if "admin" in reason else "policy"
    device = _str(p.get("device_id")) if p.get("scope") == "device" else None
    user = _str(p.get("user_id"))
    if user is None and device is None:
        return None
    return Signal(
        CAEP_SESSION_REVOKED,
        user,
        device,
        {
            "event_timestamp": _ts(event),
            "initiating_entity": entity,
            "reason_admin": {"en": f"sessions revoked: {reason}"},
        },
    )


def _disabled(event: DomainEvent) -> Signal | None:
    user = _str(event.payload.get("user_id")) or _str(event.subject)
    if user is None:
        return None
    return Signal(RISC_ACCOUNT_DISABLED, user, None, {}, complex_subject=False)


def signal_for(event: DomainEvent) -> Signal | None:
    """The signal ``event`` causes, or ``None``."""
    if event.type == EventType.COMPLIANCE_CHANGED:
        return _compliance(event)
    if event.type == EventType.ACCESS_REVOKED:
        return _revoked(event)
    if event.type in (
        EventType.ACCOUNT_DISABLED,
        EventType.ACCOUNT_DELETED,
        EventType.USER_OFFBOARDED,
    ):
        return _disabled(event)
    return None
