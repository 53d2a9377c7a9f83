"""The device administration API on SQLite and PostgreSQL: reading devices and commands,
lock / wipe / selective wipe / retire / cancel / approve / reject, and the attacks on it --
each refused with the right status, audited, and nothing changed in the database."""

from __future__ import annotations

from typing import Any

import pytest

from mdm_core.posture.model import Ownership, Platform
from tests.helpers.enrolled import enroll_device
from tests.unit.posture_gateway.admin.conftest import SHARED, AdminApp

ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("lock", {"message": "call us"}),
    ("wipe", {"reason": "lost"}),
    ("selective-wipe", {"reason": "left"}),
    ("retire", {"reason": "gone"}),
]


def _device(env: AdminApp, user: str = "alice", ownership: Ownership = Ownership.CORPORATE) -> str:
    return enroll_device(env.core, user, ownership=ownership, platform=Platform.LINUX).device_id


def _client(env: AdminApp) -> Any:  # answers' .json as Any
    return env.client()


def _j(response: Any) -> Any:
    return response.json


def _post(env: AdminApp, who: str | None, path: str, body: Any = None) -> Any:
    headers = env.headers(who) if who else {}
    return env.client().post(path, json=body, headers=headers)


# --- reading ------------------------------------------------------------------------------


def test_list_filters_and_pages(admin_app: AdminApp) -> None:
    ids = sorted(
        [_device(admin_app, "alice") for _ in range(3)]
        + [_device(admin_app, "bob", Ownership.BYOD)]
    )
    client = _client(admin_app)
    h = admin_app.headers("hal")
    every = client.get("/admin/api/devices", headers=h)
    assert every.status_code == 200 and every.headers["Cache-Control"] == "no-store"
    assert [d["id"] for d in _j(every)["devices"]] == ids and _j(every)["next_cursor"] is None
    first = client.get("/admin/api/devices?limit=2", headers=h).json
    assert [d["id"] for d in first["devices"]] == ids[:2] and first["next_cursor"]
    second = client.get(f"/admin/api/devices?limit=2&cursor={first['next_cursor']}", headers=h)
    assert [d["id"] for d in _j(second)["devices"]] == ids[2:]
    byod = client.get("/admin/api/devices?ownership=byod", headers=h).json["devices"]
    assert [d["user_id"] for d in byod] == ["bob"]
    alice = client.get("/admin/api/devices?user_id=alice&status=active", headers=h).json
    assert len(alice["devices"]) == 3
    for bad in ("limit=0", "limit=201", "limit=x", "status=gone", "ownership=x", "cursor=%%%"):
        answer = client.get(f"/admin/api/devices?{bad}", headers=h)
        assert answer.status_code == 400, bad
        assert _j(answer)["error"] == "bad_request"


def test_show_and_commands(admin_app: AdminApp) -> None:
    device_id = _device(admin_app)
    client = _client(admin_app)
    h = admin_app.headers("hal")
    shown = client.get(f"/admin/api/devices/{device_id}", headers=h)
    assert shown.status_code == 200
    assert _j(shown)["device"]["ownership"] == "corporate"
    assert _j(shown)["compliance"]["state"] in {"unknown", "compliant", "noncompliant"}
    assert _j(shown)["wipe_requests"] == []
    lock = _post(
        admin_app, "hal", f"/admin/api/devices/{device_id}/lock", {"phone_number": "+1 555 0100"}
    )
    assert lock.status_code == 202
    listed = client.get(f"/admin/api/devices/{device_id}/commands", headers=h).json["commands"]
    assert [c["type"] for c in listed] == ["lock"]
    assert listed[0]["status"] == "queued" and listed[0]["created_by"] == "admin:hal"
    assert listed[0]["payload"] == {"phone_number": "+1 555 0100", "message": None}
    assert [t["to"] for t in listed[0]["transitions"]] == ["queued"]
    for path in ("/admin/api/devices/nope", "/admin/api/devices/nope/commands"):
        missing = client.get(path, headers=h)
        assert missing.status_code == 404 and _j(missing)["error"] == "unknown_device"


# --- acting -------------------------------------------------------------------------------


def test_lock_is_helpdesk_and_audited(admin_app: AdminApp) -> None:
    device_id = _device(admin_app)
    answer = _post(
        admin_app, "hal", f"/admin/api/devices/{device_id}/lock", {"message": "found? call"}
    )
    assert answer.status_code == 202
    command = _j(answer)["command"]
    assert command["type"] == "lock" and command["status"] == "queued"
    assert ("command.queued", device_id, "ok") in admin_app.audit("admin:hal")


def test_two_person_full_wipe(admin_app: AdminApp) -> None:
    device_id = _device(admin_app)
    asked = _post(admin_app, "ada", f"/admin/api/devices/{device_id}/wipe", {"reason": "stolen"})
    assert asked.status_code == 202
    request = _j(asked)["wipe_request"]
    assert request["status"] == "pending_approval" and request["approvals"] == ["admin:ada"]
    assert request["command_id"] is None
    # the requester cannot be the second signature
    before = admin_app.snapshot()
    own = _post(admin_app, "ada", f"/admin/api/wipe-requests/{request['id']}/approve")
    assert own.status_code == 409 and _j(own)["error"] == "second_admin_required"
    assert admin_app.snapshot() == before
    assert any(
        a == "admin.admin_devices.approve_view" and o == "refused"
        for a, _, o in admin_app.audit("admin:ada")
    )
    # a helpdesk cannot approve either
    helpdesk = _post(admin_app, "hal", f"/admin/api/wipe-requests/{request['id']}/approve")
    assert helpdesk.status_code == 403 and admin_app.snapshot() == before
    approved = _post(admin_app, "bob", f"/admin/api/wipe-requests/{request['id']}/approve")
    assert approved.status_code == 200, approved.json
    done = _j(approved)["wipe_request"]
    assert done["status"] == "queued" and done["approvals"] == ["admin:ada", "admin:bob"]
    commands = (
        _client(admin_app)
        .get(f"/admin/api/devices/{device_id}/commands", headers=admin_app.headers("hal"))
        .json["commands"]
    )
    assert [(c["id"], c["type"], c["status"]) for c in commands] == [
        (done["command_id"], "wipe", "queued")
    ]
    listed = (
        _client(admin_app)
        .get("/admin/api/wipe-requests?status=queued", headers=admin_app.headers("hal"))
        .json["wipe_requests"]
    )
    assert [r["id"] for r in listed] == [request["id"]]
    again = _post(admin_app, "bob", f"/admin/api/wipe-requests/{request['id']}/approve")
    assert again.status_code == 409 and _j(again)["error"] == "wipe_request_closed"


def test_reject_a_wipe_request(admin_app: AdminApp) -> None:
    device_id = _device(admin_app)
    request = _post(
        admin_app, "ada", f"/admin/api/devices/{device_id}/wipe", {"reason": "stolen"}
    ).json["wipe_request"]
    no_reason = _post(admin_app, "bob", f"/admin/api/wipe-requests/{request['id']}/reject", {})
    assert no_reason.status_code == 400
    rejected = _post(
        admin_app, "bob", f"/admin/api/wipe-requests/{request['id']}/reject", {"reason": "found"}
    )
    assert rejected.status_code == 200 and _j(rejected)["wipe_request"]["status"] == "rejected"
    missing = _post(admin_app, "bob", "/admin/api/wipe-requests/nope/approve")
    assert missing.status_code == 404 and _j(missing)["error"] == "unknown_wipe_request"


def test_without_the_two_person_rule_a_wipe_is_queued_at_once(one_admin_app: AdminApp) -> None:
    device_id = _device(one_admin_app)
    asked = _post(one_admin_app, "ada", f"/admin/api/devices/{device_id}/wipe", {"reason": "x"})
    assert asked.status_code == 202
    assert _j(asked)["wipe_request"]["status"] == "queued"
    assert _j(asked)["wipe_request"]["command_id"]


def test_selective_wipe_names_only_managed_data(admin_app: AdminApp) -> None:
    device_id = _device(admin_app, "bob", Ownership.BYOD)
    answer = _post(
        admin_app, "ada", f"/admin/api/devices/{device_id}/selective-wipe", {"reason": "left"}
    )
    assert answer.status_code == 202, answer.json
    command = _j(answer)["command"]
    assert command["type"] == "selective_wipe"
    assert command["payload"]["work_container"] is True
    assert set(command["payload"]) == {
        "reason",
        "work_container",
        "apps",
        "certificates",
        "configurations",
    }


def test_an_idempotency_key_makes_a_double_click_one_command(admin_app: AdminApp) -> None:
    """The same admin, key and device: the command already queued, not a second one; the
    key used for another command is 409; another admin's same key is their own command; a
    malformed key is 400 and queues nothing."""
    device_id = _device(admin_app, "bob", Ownership.BYOD)
    client = _client(admin_app)
    path = f"/admin/api/devices/{device_id}/selective-wipe"

    def send(who: str, key: str, body: dict[str, Any], where: str = path) -> Any:
        headers = {**admin_app.headers(who), "Idempotency-Key": key}
        return client.post(where, json=body, headers=headers)

    first = send("ada", "click-1", {"reason": "left"})
    again = send("ada", "click-1", {"reason": "left"})
    assert first.status_code == again.status_code == 202
    assert _j(first)["command"]["id"] == _j(again)["command"]["id"]
    other_reason = send("ada", "click-1", {"reason": "another reason"})
    assert other_reason.status_code == 409
    assert _j(other_reason)["error"] == "idempotency_conflict"
    by_bob = send("bob", "click-1", {"reason": "left"})
    assert by_bob.status_code == 202
    assert _j(by_bob)["command"]["id"] != _j(first)["command"]["id"]
    lock = f"/admin/api/devices/{device_id}/lock"
    locks = [send("hal", "lock-7", {"message": "call us"}, lock) for _ in range(2)]
    assert [a.status_code for a in locks] == [202, 202]
    assert _j(locks[0])["command"]["id"] == _j(locks[1])["command"]["id"]
    before = admin_app.snapshot()
    for bad in ("", "x" * 65, "has space", "a/b", "é"):
        refused = send("ada", bad, {"reason": "left"})
        assert refused.status_code == 400, bad
        assert _j(refused)["error"] == "bad_request"
    assert admin_app.snapshot() == before
    listed = client.get(
        f"/admin/api/devices/{device_id}/commands", headers=admin_app.headers("hal")
    )
    assert sorted(c["type"] for c in _j(listed)["commands"]) == [
        "lock",
        "selective_wipe",
        "selective_wipe",
    ]


def test_retire_then_lock_is_refused(admin_app: AdminApp) -> None:
    device_id = _device(admin_app)
    retired = _post(admin_app, "ada", f"/admin/api/devices/{device_id}/retire", {"reason": "gone"})
    assert retired.status_code == 200
    assert _j(retired)["device"]["status"] == "retired" and _j(retired)["revoked_certificates"]
    before = admin_app.snapshot()
    lock = _post(admin_app, "hal", f"/admin/api/devices/{device_id}/lock", {})
    assert lock.status_code == 409 and _j(lock)["error"] == "device_inactive"
    assert admin_app.snapshot() == before
    assert ("admin.admin_devices.lock_view", device_id, "refused") in admin_app.audit("admin:hal")


def test_cancel_a_command(admin_app: AdminApp) -> None:
    device_id = _device(admin_app)
    command = _post(admin_app, "hal", f"/admin/api/devices/{device_id}/lock", {}).json["command"]
    refused = _post(admin_app, "hal", f"/admin/api/commands/{command['id']}/cancel", {})
    assert refused.status_code == 403
    cancelled = _post(
        admin_app, "ada", f"/admin/api/commands/{command['id']}/cancel", {"reason": "mistake"}
    )
    assert cancelled.status_code == 200 and _j(cancelled)["command"]["status"] == "cancelled"
    assert ("command.cancelled", device_id, "ok") in admin_app.audit("admin:ada")
    again = _post(admin_app, "ada", f"/admin/api/commands/{command['id']}/cancel")
    assert again.status_code == 409 and _j(again)["error"] == "illegal_transition"
    missing = _post(admin_app, "ada", "/admin/api/commands/nope/cancel")
    assert missing.status_code == 404 and _j(missing)["error"] == "unknown_command"


@pytest.mark.parametrize(
    ("action", "body", "error"),
    [
        ("lock", {"message": "x", "extra": 1}, "bad_request"),
        ("lock", {"phone_number": "call me"}, "bad_request"),
        ("lock", ["not", "an", "object"], "bad_request"),
        ("wipe", None, "bad_request"),
        ("wipe", {"reason": ""}, "bad_request"),
        ("wipe", {"reason": 5}, "bad_request"),
        ("retire", {}, "bad_request"),
        ("selective-wipe", {"reason": "x" * 501}, "bad_request"),
    ],
)
def test_bad_bodies_are_400_and_change_nothing(
    one_admin_app: AdminApp, action: str, body: Any, error: str
) -> None:
    device_id = _device(one_admin_app)
    before = one_admin_app.snapshot()
    answer = _post(one_admin_app, "ada", f"/admin/api/devices/{device_id}/{action}", body)
    assert answer.status_code == 400 and _j(answer)["error"] == error
    assert one_admin_app.snapshot() == before


def test_not_json_is_400(one_admin_app: AdminApp) -> None:
    device_id = _device(one_admin_app)
    answer = _client(one_admin_app).post(
        f"/admin/api/devices/{device_id}/wipe",
        data=b"{nope",
        headers={**one_admin_app.headers("ada"), "Content-Type": "application/json"},
    )
    assert answer.status_code == 400


# --- attacks ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [a for a, _ in ACTIONS])
@pytest.mark.parametrize(
    "credential", ["none", "malformed", "shared", "forged", "disabled", "unknown"]
)
def test_no_named_admin_no_action(admin_app: AdminApp, action: str, credential: str) -> None:
    device_id = _device(admin_app)
    from posture_gateway.admin.service import disable_admin

    token = admin_app.tokens["ada"]
    headers = {
        "none": {},
        "malformed": {"Authorization": f"Token {token}"},
        "shared": {"Authorization": f"Bearer {SHARED}"},
        "forged": {"Authorization": f"Bearer {token[:21]}{'Z' * 43}"},
        "disabled": {"Authorization": f"Bearer {token}"},
        "unknown": {"Authorization": "Bearer pga_0123456789abcdef_" + "A" * 43},
    }[credential]
    if credential == "disabled":
        disable_admin(admin_app.core.storage, "ada", actor="operator:test")
    body = dict(ACTIONS)[action]
    before = admin_app.snapshot()
    answer = _client(admin_app).post(
        f"/admin/api/devices/{device_id}/{action}", json=body, headers=headers
    )
    assert answer.status_code == 401, answer.json
    assert _j(answer)["error"] in {"unauthorized", "admin_disabled"}
    assert admin_app.snapshot() == before
    # reading needs a named admin too
    assert _client(admin_app).get("/admin/api/devices", headers=headers).status_code == 401


@pytest.mark.parametrize("action", ["wipe", "selective-wipe", "retire"])
def test_helpdesk_never_wipes_or_retires(admin_app: AdminApp, action: str) -> None:
    device_id = _device(admin_app, ownership=Ownership.CORPORATE)
    before = admin_app.snapshot()
    answer = _post(admin_app, "hal", f"/admin/api/devices/{device_id}/{action}", {"reason": "x"})
    assert answer.status_code == 403 and _j(answer)["error"] == "forbidden"
    assert admin_app.snapshot() == before
    endpoint = {"wipe": "wipe_view", "selective-wipe": "selective_wipe_view"}.get(
        action, "retire_view"
    )
    assert (f"admin.admin_devices.{endpoint}", device_id, "refused") in admin_app.audit("admin:hal")


def test_a_byod_device_is_never_fully_wiped(admin_app: AdminApp) -> None:
    device_id = _device(admin_app, "bob", Ownership.BYOD)
    before = admin_app.snapshot()
    answer = _post(admin_app, "ada", f"/admin/api/devices/{device_id}/wipe", {"reason": "left"})
    assert answer.status_code == 409 and _j(answer)["error"] == "full_wipe_not_corporate"
    assert admin_app.snapshot() == before
    assert ("admin.admin_devices.wipe_view", device_id, "refused") in admin_app.audit("admin:ada")


def test_unknown_device_actions_are_404_and_change_nothing(admin_app: AdminApp) -> None:
    before = admin_app.snapshot()
    for action, body in ACTIONS:
        answer = _post(admin_app, "ada", f"/admin/api/devices/nope/{action}", body)
        assert answer.status_code == 404, (action, answer.json)
    assert admin_app.snapshot() == before
