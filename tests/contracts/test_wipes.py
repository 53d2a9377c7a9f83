"""Full wipes on both backends: corporate only whatever the caller, and the two-person rule.

- ``CommandService`` refuses a ``wipe`` for a non-corporate device (all or nothing, audited,
  nothing written) and cancels one found at delivery on a device that is no longer corporate;
- ``WipeService``: refusals (unknown, retired, BYOD) change nothing and are audited; without
  the rule the wipe is queued at once; with it, two different named admins must sign, an
  automatic caller never signs, the same admin twice is refused; a rejected request queues
  nothing; one open request per device; two admins approving at once queue one wipe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import ColumnElement, Table, func, select, update

from mdm_core.device.commands import CommandService, CommandStatus, InactiveDevice, NoSuchDevice
from mdm_core.device.wipes import (
    ApprovalRequired,
    FullWipeRefused,
    SameApprover,
    WipeRequestClosed,
    WipeRequestNotFound,
    WipeRequestStatus,
    WipeService,
    is_human_admin,
)
from mdm_core.domain.errors import BadRequest
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.loader import load_policy_directory
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import (
    audit_log,
    command_transitions,
    commands,
    devices,
    outbox,
    wipe_requests,
)
from mdm_core.storage.sql.uow import SqlStorage
from tests.contracts.device_rows import add_device

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

NO_RULE = """
kind: OffboardingPolicy
id: default
actions: {corporate: full_wipe, byod: selective_wipe}
"""
RULE_FOR_EXECS = (
    NO_RULE
    + """---
kind: OffboardingPolicy
id: execs
assign: {groups: [executives]}
actions: {corporate: full_wipe}
two_person_rule: true
"""
)
RULE_FOR_ALL = """
kind: OffboardingPolicy
id: default
actions: {corporate: full_wipe, byod: selective_wipe}
two_person_rule: true
"""


def _policies(tmp: Path, text: str) -> Callable[[], CompiledPolicySet]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "offboarding.yaml").write_text(text.lstrip("\n"), encoding="utf-8")
    compiled = load_policy_directory(tmp, now=T0)
    return lambda: compiled


def _count(database: Database, table: Table, *where: ColumnElement[bool]) -> int:
    with database.transaction() as conn:
        stmt = select(func.count()).select_from(table)
        for clause in where:
            stmt = stmt.where(clause)
        return int(conn.execute(stmt).scalar_one())


def _audit(database: Database, action: str) -> list[tuple[str, str, str, dict]]:  # type: ignore[type-arg]
    with database.transaction() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.subject, audit_log.c.outcome, audit_log.c.detail)
            .where(audit_log.c.action == action)
            .order_by(audit_log.c.id)
        ).all()
    return [(r.actor, r.subject, r.outcome, dict(r.detail)) for r in rows]


def _wipes(database: Database, device_id: str) -> list[str]:
    with database.transaction() as conn:
        return list(
            conn.execute(
                select(commands.c.id).where(
                    commands.c.device_id == device_id, commands.c.type == "wipe"
                )
            ).scalars()
        )


def _set_ownership(database: Database, device_id: str, ownership: str) -> None:
    with database.transaction() as conn:
        conn.execute(update(devices).where(devices.c.id == device_id).values(ownership=ownership))


def _seeded(database: Database) -> SqlStorage:
    add_device(database, "corp", ownership="corporate")
    add_device(database, "corp2", ownership="corporate")
    add_device(database, "phone", ownership="byod")
    add_device(database, "gone", ownership="corporate", status="retired")
    return SqlStorage(database)


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return _seeded(database)


@pytest.fixture
def pg_storage(postgres_database: Database) -> SqlStorage:
    """The same devices on PostgreSQL only (the race tests)."""
    return _seeded(postgres_database)


# --- the command service: corporate only, whatever the caller ------------------------------


def test_enqueue_refuses_a_full_wipe_of_a_byod_device(
    storage: SqlStorage, database: Database
) -> None:
    service = CommandService(storage)
    before = _count(database, outbox), _count(database, command_transitions)
    with pytest.raises(FullWipeRefused) as refused:
        service.enqueue("phone", "wipe", {}, created_by="admin:eve", now=T0)
    assert refused.value.reason == "full_wipe_not_corporate" and refused.value.status == 409
    # all or nothing: one BYOD device among corporate ones and nothing is queued at all
    with pytest.raises(FullWipeRefused):
        service.enqueue_many(["corp", "phone", "corp2"], "wipe", created_by="hr:generic", now=T0)
    assert _count(database, commands) == 0
    assert (_count(database, outbox), _count(database, command_transitions)) == before
    refusals = _audit(database, "command.refused")
    assert [(a, s, o) for a, s, o, _ in refusals] == [
        ("admin:eve", "phone", "refused"),
        ("hr:generic", "phone", "refused"),
    ]
    assert refusals[0][3]["reason"] == "full_wipe_not_corporate"
    # a selective wipe of the same device, and a full wipe of a corporate one, are fine
    service.enqueue("phone", "selective_wipe", {}, created_by="admin:eve", now=T0)
    service.enqueue_many(["corp", "corp2"], "wipe", created_by="admin:eve", now=T0)
    assert _count(database, commands) == 3


def test_unknown_and_retired_devices_keep_their_errors(storage: SqlStorage) -> None:
    service = CommandService(storage)
    with pytest.raises(NoSuchDevice):
        service.enqueue("nope", "wipe", {}, created_by="t", now=T0)
    with pytest.raises(InactiveDevice):
        service.enqueue("gone", "wipe", {}, created_by="t", now=T0)


def test_a_queued_wipe_is_cancelled_at_delivery_once_the_device_is_byod(
    storage: SqlStorage, database: Database
) -> None:
    service = CommandService(storage)
    wipe = service.enqueue("corp", "wipe", {}, created_by="admin:eve", now=T0)
    lock = service.enqueue("corp", "lock", {}, created_by="admin:eve", now=T0)
    _set_ownership(database, "corp", "byod")  # re-enrolled as a personal device
    with storage.unit_of_work() as uow:
        got = service.deliver(uow, "corp", now=T0 + timedelta(minutes=1))
    assert [c.id for c in got] == [lock.id]  # the lock still goes; the wipe never does
    cancelled = service.get(wipe.id)
    assert cancelled is not None and cancelled.status is CommandStatus.CANCELLED
    last = service.transitions(wipe.id)[-1]
    assert last.to_status is CommandStatus.CANCELLED
    assert last.detail is not None and "full_wipe_not_corporate" in last.detail
    assert "byod" in last.detail
    with database.transaction() as conn:
        events = conn.execute(
            select(outbox.c.payload).where(outbox.c.subject == wipe.id).order_by(outbox.c.id)
        ).scalars()
        assert [e["to"] for e in events] == ["queued", "cancelled"]
    assert _audit(database, "command.cancelled")[0][:3] == ("system", "corp", "refused")
    # never delivered later either, even if the device comes back as corporate
    _set_ownership(database, "corp", "corporate")
    with storage.unit_of_work() as uow:
        again = service.deliver(uow, "corp", now=T0 + timedelta(minutes=2))
    assert [c.id for c in again] == [lock.id]  # the unanswered lock again, never the wipe


def test_a_wipe_already_delivered_but_unanswered_is_cancelled_too(
    storage: SqlStorage, database: Database
) -> None:
    service = CommandService(storage)
    wipe = service.enqueue("corp", "wipe", {}, created_by="admin:eve", now=T0)
    with storage.unit_of_work() as uow:
        assert [c.id for c in service.deliver(uow, "corp", now=T0)] == [wipe.id]
    _set_ownership(database, "corp", "byod")
    with storage.unit_of_work() as uow:
        assert service.deliver(uow, "corp", now=T0 + timedelta(minutes=5)) == []
    assert service.get(wipe.id).status is CommandStatus.CANCELLED  # type: ignore[union-attr]


def test_a_corporate_device_gets_its_wipe(storage: SqlStorage) -> None:
    service = CommandService(storage)
    wipe = service.enqueue("corp", "wipe", {}, created_by="admin:eve", now=T0)
    with storage.unit_of_work() as uow:
        assert [c.id for c in service.deliver(uow, "corp", now=T0)] == [wipe.id]


# --- WipeService ---------------------------------------------------------------------------


def test_is_human_admin() -> None:
    assert is_human_admin("admin:alice") and is_human_admin("admin:a.b-c_d")
    for actor in ("offboarding:j1", "hr:bamboohr", "operator:root", "system", "admin:", "admin:A",
                  "admin:alice bob", " admin:alice", "device:d1", ""):  # fmt: skip
        assert not is_human_admin(actor), actor


@pytest.mark.parametrize(
    ("device", "error"),
    [("phone", FullWipeRefused), ("gone", InactiveDevice), ("nope", NoSuchDevice)],
)
def test_requests_that_cannot_be_granted_change_nothing(
    storage: SqlStorage, database: Database, tmp_path: Path, device: str, error: type[Exception]
) -> None:
    wipes = WipeService(storage, _policies(tmp_path, NO_RULE))
    with pytest.raises(error):
        wipes.request_full_wipe(device, requested_by="admin:eve", reason="lost", now=T0)
    assert _count(database, wipe_requests) == 0 and _count(database, commands) == 0
    assert _audit(database, "wipe.requested") == []
    refused = _audit(database, "wipe.request")
    assert [(a, s, o) for a, s, o, _ in refused] == [("admin:eve", device, "refused")]


def test_bad_input_is_refused(storage: SqlStorage, tmp_path: Path) -> None:
    wipes = WipeService(storage, _policies(tmp_path, NO_RULE))
    with pytest.raises(BadRequest):
        wipes.request_full_wipe("corp", requested_by="admin:eve", reason=" ", now=T0)
    with pytest.raises(BadRequest):
        wipes.request_full_wipe("corp", requested_by="", reason="x", now=T0)
    with pytest.raises(BadRequest):
        wipes.list(status="done")


def test_without_the_rule_the_wipe_is_queued_at_once(
    storage: SqlStorage, database: Database, tmp_path: Path
) -> None:
    wipes = WipeService(storage, _policies(tmp_path, NO_RULE))
    request = wipes.request_full_wipe("corp", requested_by="offboarding:j1", reason="left", now=T0)
    assert request.status is WipeRequestStatus.QUEUED and request.command_id is not None
    assert request.approvals == () and request.user_id == "u-corp"
    command = CommandService(storage).get(request.command_id)
    assert command is not None and command.type.value == "wipe"
    assert command.idempotency_key == f"wipe-request:{request.id}"
    assert command.created_by == "offboarding:j1"
    assert _wipes(database, "corp") == [request.command_id]
    # asked again while the wipe is on its way: the same request, no second wipe
    again = wipes.request_full_wipe("corp", requested_by="admin:eve", reason="again", now=T0)
    assert again.id == request.id and _wipes(database, "corp") == [request.command_id]
    assert [(a, o) for a, _, o, _ in _audit(database, "wipe.requested")] == [
        ("offboarding:j1", "ok"),
        ("admin:eve", "already_open"),
    ]
    assert [a for a, *_ in _audit(database, "wipe.queued")] == ["offboarding:j1"]
    assert wipes.get(request.id) == again
    assert [r.id for r in wipes.list(device_id="corp")] == [request.id]
    assert wipes.list(status="pending_approval") == []
    assert request.to_json()["status"] == "queued"


def test_a_new_request_once_the_last_wipe_failed(storage: SqlStorage, tmp_path: Path) -> None:
    wipes = WipeService(storage, _policies(tmp_path, NO_RULE))
    first = wipes.request_full_wipe("corp", requested_by="admin:eve", reason="lost", now=T0)
    assert first.command_id is not None
    service = CommandService(storage)
    with storage.unit_of_work() as uow:
        service.deliver(uow, "corp", now=T0)
    service.record_result("corp", first.command_id, "error", "not now", now=T0)
    second = wipes.request_full_wipe("corp", requested_by="admin:eve", reason="again", now=T0)
    assert second.id != first.id and second.command_id not in (None, first.command_id)


def test_two_person_rule_needs_a_second_different_admin(
    storage: SqlStorage, database: Database, tmp_path: Path
) -> None:
    wipes = WipeService(storage, _policies(tmp_path, RULE_FOR_ALL))
    request = wipes.request_full_wipe("corp", requested_by="admin:alice", reason="lost", now=T0)
    assert request.status is WipeRequestStatus.PENDING_APPROVAL
    assert request.approvals == ("admin:alice",) and request.command_id is None
    assert _wipes(database, "corp") == []
    with pytest.raises(SameApprover) as same:
        wipes.approve(request.id, approver="admin:alice", now=T0)
    assert same.value.reason == "second_admin_required" and same.value.status == 409
    for robot in ("offboarding:j1", "hr:bamboohr", "operator:root"):
        with pytest.raises(ApprovalRequired):
            wipes.approve(request.id, approver=robot, now=T0)
    assert _wipes(database, "corp") == []
    assert wipes.get(request.id).approvals == ("admin:alice",)
    done = wipes.approve(request.id, approver="admin:bob", now=T0 + timedelta(minutes=1))
    assert done.status is WipeRequestStatus.QUEUED and done.approvals == (
        "admin:alice",
        "admin:bob",
    )
    assert _wipes(database, "corp") == [done.command_id]
    with pytest.raises(WipeRequestClosed):
        wipes.approve(request.id, approver="admin:carol", now=T0)
    refusals = _audit(database, "wipe.approve")
    assert [(a, o, d["reason"]) for a, _, o, d in refusals] == [
        ("admin:alice", "refused", "second_admin_required"),
        ("offboarding:j1", "refused", "second_admin_required"),
        ("hr:bamboohr", "refused", "second_admin_required"),
        ("operator:root", "refused", "second_admin_required"),
        ("admin:carol", "refused", "wipe_request_closed"),
    ]
    assert [a for a, *_ in _audit(database, "wipe.approved")] == ["admin:bob"]
    assert [a for a, *_ in _audit(database, "wipe.queued")] == ["admin:bob"]


def test_an_automatic_requester_never_signs(
    storage: SqlStorage, database: Database, tmp_path: Path
) -> None:
    wipes = WipeService(storage, _policies(tmp_path, RULE_FOR_ALL))
    request = wipes.request_full_wipe("corp", requested_by="offboarding:j9", reason="left", now=T0)
    assert request.approvals == () and request.status is WipeRequestStatus.PENDING_APPROVAL
    one = wipes.approve(request.id, approver="admin:alice", now=T0)
    assert one.status is WipeRequestStatus.PENDING_APPROVAL and _wipes(database, "corp") == []
    two = wipes.approve(request.id, approver="admin:bob", now=T0)
    assert two.status is WipeRequestStatus.QUEUED and _wipes(database, "corp") == [two.command_id]


def test_the_rule_follows_the_users_groups(
    storage: SqlStorage, database: Database, tmp_path: Path
) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(DirectoryUser("u-corp", "ceo", True, "local", T0))
        uow.directory_groups.upsert(DirectoryGroup("g-ex", "executives", "local", T0))
        uow.memberships.add(Membership("g-ex", "u-corp", MemberKind.USER))
    wipes = WipeService(storage, _policies(tmp_path, RULE_FOR_EXECS))
    ceo = wipes.request_full_wipe("corp", requested_by="admin:alice", reason="x", now=T0)
    staff = wipes.request_full_wipe("corp2", requested_by="admin:alice", reason="x", now=T0)
    assert ceo.status is WipeRequestStatus.PENDING_APPROVAL
    assert staff.status is WipeRequestStatus.QUEUED


def test_reject_queues_nothing_and_frees_the_device(
    storage: SqlStorage, database: Database, tmp_path: Path
) -> None:
    wipes = WipeService(storage, _policies(tmp_path, RULE_FOR_ALL))
    request = wipes.request_full_wipe("corp", requested_by="admin:alice", reason="lost", now=T0)
    same = wipes.request_full_wipe("corp", requested_by="admin:bob", reason="dup", now=T0)
    assert same.id == request.id  # one open request per device
    rejected = wipes.reject(request.id, by="admin:bob", reason="found it", now=T0)
    assert rejected.status is WipeRequestStatus.REJECTED
    assert (rejected.closed_by, rejected.close_reason) == ("admin:bob", "found it")
    with pytest.raises(WipeRequestClosed):
        wipes.approve(request.id, approver="admin:bob", now=T0)
    with pytest.raises(WipeRequestClosed):
        wipes.reject(request.id, by="admin:bob", reason="again", now=T0)
    with pytest.raises(WipeRequestNotFound):
        wipes.approve("no-such-request", approver="admin:bob", now=T0)
    with pytest.raises(WipeRequestNotFound):
        wipes.get("no-such-request")
    assert _wipes(database, "corp") == []
    fresh = wipes.request_full_wipe("corp", requested_by="admin:alice", reason="lost", now=T0)
    assert fresh.id != request.id
    cancelled = wipes.cancel(fresh.id, by="offboarding:j1", reason="offboarding cancelled")
    assert cancelled.status is WipeRequestStatus.CANCELLED
    assert [a for a, *_ in _audit(database, "wipe.rejected")] == ["admin:bob"]
    assert [a for a, *_ in _audit(database, "wipe.cancelled")] == ["offboarding:j1"]


def test_approval_after_a_byod_re_enrollment_is_refused(
    storage: SqlStorage, database: Database, tmp_path: Path
) -> None:
    wipes = WipeService(storage, _policies(tmp_path, RULE_FOR_ALL))
    request = wipes.request_full_wipe("corp", requested_by="admin:alice", reason="lost", now=T0)
    _set_ownership(database, "corp", "byod")
    with pytest.raises(FullWipeRefused):
        wipes.approve(request.id, approver="admin:bob", now=T0)
    assert _wipes(database, "corp") == []
    assert wipes.get(request.id).approvals == ("admin:alice",)
    assert _audit(database, "wipe.approve")[-1][2:] == (
        "refused",
        {"reason": "full_wipe_not_corporate"},
    )


def test_the_service_joins_the_callers_unit_of_work(
    storage: SqlStorage, database: Database, tmp_path: Path
) -> None:
    wipes = WipeService(storage, _policies(tmp_path, NO_RULE))
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        wipes.request_full_wipe("corp", requested_by="admin:eve", reason="x", uow=uow, now=T0)
        raise RuntimeError("the caller fails after")
    assert _count(database, wipe_requests) == 0 and _wipes(database, "corp") == []


# --- concurrency (PostgreSQL: real row locks between two connections) -----------------------


def _race(*calls: Callable[[], object]) -> list[object]:
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int, call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.parametrize("requester", ["admin:alice", "offboarding:j1"])
def test_two_admins_approving_at_once_queue_exactly_one_wipe(
    pg_storage: SqlStorage, postgres_database: Database, tmp_path: Path, requester: str
) -> None:
    """Row locks between connections: PostgreSQL only (SQLite serialises writers)."""
    storage, database = pg_storage, postgres_database
    wipes = WipeService(storage, _policies(tmp_path, RULE_FOR_ALL))
    for attempt in range(5):
        device = "corp" if attempt == 0 else f"race-{attempt}"
        if attempt:
            add_device(database, device)
        request = wipes.request_full_wipe(device, requested_by=requester, reason="x", now=T0)
        results = _race(
            partial(wipes.approve, request.id, approver="admin:bob", now=T0),
            partial(wipes.approve, request.id, approver="admin:carol", now=T0),
        )
        assert len(_wipes(database, device)) == 1, results
        final = wipes.get(request.id)
        assert final.status is WipeRequestStatus.QUEUED
        assert _wipes(database, device) == [final.command_id]
        if requester == "admin:alice":  # one approval queued it, the other found it closed
            assert sum(isinstance(r, WipeRequestClosed) for r in results) == 1
            assert len(final.approvals) == 2
        else:  # both signatures count, in some order
            assert sorted(final.approvals) == ["admin:bob", "admin:carol"]


def test_two_requests_at_once_make_one_open_request(
    pg_storage: SqlStorage, postgres_database: Database, tmp_path: Path
) -> None:
    """Racing transactions: PostgreSQL only (SQLite serialises writers)."""
    storage, database = pg_storage, postgres_database
    wipes = WipeService(storage, _policies(tmp_path, NO_RULE))
    results = _race(
        lambda: wipes.request_full_wipe("corp", requested_by="admin:a", reason="x", now=T0),
        lambda: wipes.request_full_wipe("corp", requested_by="offboarding:j", reason="y", now=T0),
    )
    assert _count(database, wipe_requests) == 1, results
    assert len(_wipes(database, "corp")) == 1
