"""What an HR delivery asks for: each BambooHR employee or generic event read as one
:class:`HrEvent` (offboard, cancel, ignore, or unreadable), before any user is looked up.

BambooHR (field-based webhooks): the employee's status (``hr.bamboohr.status_field``) in one
of ``inactive_values`` means offboard now; a termination date (``termination_date_field``,
``YYYY-MM-DD``, read as midnight in ``hr.bamboohr.timezone``) that is reached means offboard
now, one in the future schedules the offboarding at that midnight; the date posted empty
(``""``, ``null`` or BambooHR's ``0000-00-00``) cancels a scheduled one; anything else is
recorded and ignored. A ``Deleted`` action carries no fields: ignored (offboard on the status
or date change that comes first). The ``source_ref`` is a stable id of the HR fact
(``bamboohr:<employee id>:status:inactive``, ``bamboohr:<employee id>:termination:<date>``,
``generic:<event_id>``), so the same fact offboards once however often it is delivered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo

from posture_gateway.hr.payloads import BambooEmployee, GenericEvent
from posture_gateway.hr.settings import BambooHrSettings, MatchAttribute

__all__ = ["EventKind", "HrEvent", "from_bamboohr", "from_generic", "EMPTY_DATES"]

#: Values BambooHR posts for "no termination date".
EMPTY_DATES = frozenset({"", "0000-00-00"})
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class EventKind(StrEnum):
    OFFBOARD = "offboard"
    CANCEL = "cancel"
    IGNORE = "ignore"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class HrEvent:
    source: str  # bamboohr | generic
    employee_ref: str  # the HR system's id of the employee (or how the event named them)
    match_attribute: MatchAttribute
    match_value: str | None  # None: the delivery does not say who (unmatched)
    kind: EventKind
    reason: str  # why this kind, for the audit trail and the admin API
    effective_at: datetime | None = None  # None: at once
    source_ref: str | None = None

    @property
    def trigger(self) -> str:
        return f"hr:{self.source}"


def _text(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return str(value).strip()


def _termination(raw: str, zone: ZoneInfo) -> datetime | None:
    if not _DATE.match(raw):
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return None
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def from_bamboohr(employee: BambooEmployee, settings: BambooHrSettings) -> HrEvent:
    eid = employee.employee_id
    fields = employee.fields
    match = _text(fields.get(settings.match_field)) or None

    def event(
        kind: EventKind,
        reason: str,
        *,
        effective_at: datetime | None = None,
        source_ref: str | None = None,
    ) -> HrEvent:
        attribute = settings.match_attribute
        return HrEvent("bamboohr", eid, attribute, match, kind, reason, effective_at, source_ref)

    if (employee.action or "").lower() == "deleted":
        return event(EventKind.IGNORE, "a deleted employee record carries no fields")
    status = _text(fields.get(settings.status_field))
    if status is not None and status.lower() in settings.inactive_values:
        return event(
            EventKind.OFFBOARD,
            f"status {status}",
            source_ref=f"bamboohr:{eid}:status:{status.lower()}",
        )
    if settings.termination_date_field in fields:
        raw = _text(fields[settings.termination_date_field]) or ""
        if raw in EMPTY_DATES:
            return event(EventKind.CANCEL, "termination date cleared")
        at = _termination(raw, ZoneInfo(settings.timezone))
        if at is None:
            return event(EventKind.INVALID, "the termination date is not YYYY-MM-DD")
        return event(
            EventKind.OFFBOARD,
            f"termination date {raw}",
            effective_at=at,
            source_ref=f"bamboohr:{eid}:termination:{raw}",
        )
    return event(EventKind.IGNORE, "no status or termination date change for offboarding")


def from_generic(body: GenericEvent) -> HrEvent:
    who = body.employee
    attribute: MatchAttribute
    if who.user_id is not None:
        attribute, value = "user_id", who.user_id
    elif who.email is not None:
        attribute, value = "email", who.email
    else:
        assert who.username is not None
        attribute, value = "username", who.username
    ref = f"{attribute}:{value}"
    if body.type == "employee.offboard_cancelled":
        return HrEvent("generic", ref, attribute, value, EventKind.CANCEL, body.type)
    return HrEvent(
        "generic",
        ref,
        attribute,
        value,
        EventKind.OFFBOARD,
        body.type,
        effective_at=body.effective_at.astimezone(UTC) if body.effective_at else None,
        source_ref=f"generic:{body.event_id}",
    )
