"""Reading a BambooHR employee / a generic event as offboard, schedule, cancel or ignore."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr

from posture_gateway.hr.events import EventKind, from_bamboohr, from_generic
from posture_gateway.hr.payloads import BambooEmployee, GenericEvent
from posture_gateway.hr.settings import BambooHrSettings

SETTINGS = BambooHrSettings(secret=SecretStr("k" * 32))


def _employee(fields: dict[str, object], action: str = "Updated") -> BambooEmployee:
    return BambooEmployee.model_validate(
        {"id": "42", "action": action, "fields": fields, "changedFields": list(fields)}
    )


def test_status_inactive_offboards_now() -> None:
    event = from_bamboohr(_employee({"status": "Inactive", "workEmail": "A@x.io"}), SETTINGS)
    assert event.kind is EventKind.OFFBOARD
    assert event.effective_at is None
    assert event.source_ref == "bamboohr:42:status:inactive"
    assert (event.match_attribute, event.match_value) == ("email", "A@x.io")
    assert event.trigger == "hr:bamboohr"


def test_termination_date_schedules_at_its_midnight() -> None:
    event = from_bamboohr(_employee({"terminationDate": "2027-01-15"}), SETTINGS)
    assert event.kind is EventKind.OFFBOARD
    assert event.effective_at == datetime(2027, 1, 15, tzinfo=UTC)
    assert event.source_ref == "bamboohr:42:termination:2027-01-15"
    zoned = BambooHrSettings(secret=SecretStr("k" * 32), timezone="Europe/Berlin")
    assert from_bamboohr(_employee({"terminationDate": "2027-01-15"}), zoned).effective_at == (
        datetime(2027, 1, 14, 23, tzinfo=UTC)
    )


def test_status_wins_over_a_future_date() -> None:
    event = from_bamboohr(
        _employee({"status": "inactive", "terminationDate": "2099-01-01"}), SETTINGS
    )
    assert event.kind is EventKind.OFFBOARD and event.effective_at is None


def test_cleared_date_cancels_and_the_rest_is_ignored() -> None:
    for empty in ("", None, "0000-00-00"):
        event = from_bamboohr(_employee({"terminationDate": empty}), SETTINGS)
        assert event.kind is EventKind.CANCEL
    assert from_bamboohr(_employee({"status": "Active"}), SETTINGS).kind is EventKind.IGNORE
    assert from_bamboohr(_employee({"firstName": "Bo"}), SETTINGS).kind is EventKind.IGNORE
    assert from_bamboohr(_employee({}, action="Deleted"), SETTINGS).kind is EventKind.IGNORE
    for bad in ("15/01/2027", "2027-02-30", "tomorrow"):
        assert from_bamboohr(_employee({"terminationDate": bad}), SETTINGS).kind is (
            EventKind.INVALID
        )


def test_no_match_value() -> None:
    event = from_bamboohr(_employee({"status": "Inactive"}), SETTINGS)
    assert event.match_value is None
    event = from_bamboohr(_employee({"status": "Inactive", "workEmail": "  "}), SETTINGS)
    assert event.match_value is None


def test_generic() -> None:
    offboard = GenericEvent.model_validate(
        {
            "event_id": "e1",
            "type": "employee.offboard",
            "employee": {"username": "bob"},
            "effective_at": "2027-01-01T09:00:00+02:00",
        }
    )
    event = from_generic(offboard)
    assert event.kind is EventKind.OFFBOARD
    assert event.effective_at == datetime(2027, 1, 1, 7, tzinfo=UTC)
    assert (event.match_attribute, event.match_value, event.source_ref) == (
        "username",
        "bob",
        "generic:e1",
    )
    cancel = GenericEvent.model_validate(
        {"event_id": "e2", "type": "employee.offboard_cancelled", "employee": {"user_id": "u1"}}
    )
    assert from_generic(cancel).kind is EventKind.CANCEL
