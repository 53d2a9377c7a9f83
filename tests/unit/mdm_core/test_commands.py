"""The command status machine and payload validation (pure, no store)."""

from __future__ import annotations

import pytest

from mdm_core.device.commands import (
    FINAL_STATUSES,
    PAYLOAD_MODELS,
    CommandStatus,
    CommandType,
    IllegalTransition,
    InvalidCommand,
    check_transition,
    validate_payload,
)

S = CommandStatus
LEGAL = {
    (None, S.QUEUED),
    (S.QUEUED, S.DELIVERED),
    (S.QUEUED, S.CANCELLED),
    (S.DELIVERED, S.DELIVERED),
    (S.DELIVERED, S.ACKNOWLEDGED),
    (S.DELIVERED, S.ERROR),
    (S.DELIVERED, S.NOT_NOW),
    (S.DELIVERED, S.CANCELLED),
    (S.NOT_NOW, S.DELIVERED),
    (S.NOT_NOW, S.CANCELLED),
}


@pytest.mark.parametrize("current", [None, *S])
@pytest.mark.parametrize("new", list(S))
def test_status_machine_is_exactly_the_documented_one(current, new) -> None:
    if (current, new) in LEGAL:
        check_transition(current, new)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(current, new)
        assert info.value.status == 409 and info.value.reason == "illegal_transition"


def test_final_statuses_have_no_way_out() -> None:
    for final in FINAL_STATUSES:
        for new in S:
            with pytest.raises(IllegalTransition):
                check_transition(final, new)


def test_every_type_has_a_payload_model() -> None:
    assert set(PAYLOAD_MODELS) == set(CommandType)


@pytest.mark.parametrize(
    ("kind", "payload", "stored"),
    [
        ("lock", {"message": "Call IT", "phone_number": "+33 1 23 45 67 89"}, None),
        ("lock", None, {"message": None, "phone_number": None}),
        ("wipe", {}, {"preserve_data_plan": False, "pin": None}),
        ("wipe", {"pin": "123456"}, None),
        ("selective_wipe", {"reason": "offboarded"}, None),
        (
            "selective_wipe",
            {},
            {
                "reason": None,
                "work_container": True,
                "apps": [],
                "certificates": [],
                "configurations": [],
            },
        ),
        (
            "selective_wipe",
            {"apps": ["com.corp.mail"], "certificates": ["corp-root"], "configurations": ["wifi"]},
            None,
        ),
        ("install_app", {"app_id": "com.corp.mail"}, None),
        (
            "install_app",
            {"app_id": "x", "manifest_url": "https://apps.corp/x.plist", "source": "enterprise"},
            None,
        ),
        ("remove_app", {"app_id": "com.corp.old"}, None),
        ("apply_configuration", {"configuration_id": "wifi", "settings": {"ssid": "corp"}}, None),
        ("request_checkin", {}, {}),
    ],
)
def test_valid_payloads(kind: str, payload, stored) -> None:
    got = validate_payload(kind, payload)
    if stored is not None:
        assert got == stored
    for key, value in (payload or {}).items():
        assert got[key] == value


@pytest.mark.parametrize(
    ("kind", "payload", "needle"),
    [
        ("format_disk", {}, "unknown command type"),
        ("lock", {"phone_number": "call me"}, "phone_number"),
        ("lock", {"message": "x" * 501}, "message"),
        ("lock", {"colour": "red"}, "colour"),
        ("wipe", {"pin": "12"}, "pin"),
        ("wipe", {"preserve_data_plan": "yes"}, "preserve_data_plan"),
        ("selective_wipe", {"paths": ["/home/alice"]}, "paths"),
        ("selective_wipe", {"apps": ["/home/alice/Photos"]}, "apps.0"),
        ("selective_wipe", {"apps": ["a", "a"]}, "distinct"),
        ("selective_wipe", {"certificates": "corp-root"}, "certificates"),
        ("selective_wipe", {"work_container": 1}, "work_container"),
        ("install_app", {}, "app_id"),
        ("install_app", {"app_id": ""}, "app_id"),
        ("install_app", {"app_id": "x", "manifest_url": "http://plain/x"}, "manifest_url"),
        ("install_app", {"app_id": "x", "source": "sideload"}, "source"),
        ("remove_app", {"app_id": 5}, "app_id"),
        ("apply_configuration", {"settings": {}}, "configuration_id"),
        ("request_checkin", {"now": True}, "now"),
    ],
)
def test_invalid_payloads(kind: str, payload, needle: str) -> None:
    with pytest.raises(InvalidCommand) as info:
        validate_payload(kind, payload)
    assert needle in str(info.value)
    assert info.value.status == 422
