"""OffboardingService on a real core (SQLite): every path of the durable offboarding job.

At once: logins blocked (the mirror's user context and the cached read model), sessions and
tokens revoked, ``user.offboarded`` written, enrollment refused, one command per device by
ownership and policy. Then ``run_due``: retire only after the acknowledgement, a device
offline for 30 days still gets its command, scheduled jobs fire or are cancelled, a second
trigger is the same job, reinstate lifts the block. A failing step rolls back all of it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from mdm_core.device.command_model import IllegalTransition
from mdm_core.device.enrollment import EnrollmentRequest
from mdm_core.domain.device_lifecycle import change_status
from mdm_core.domain.errors import NotFound
from mdm_core.domain.model import DeviceStatus
from mdm_core.offboarding.model import (
    DeviceState,
    InvalidOffboarding,
    JobNotFound,
    JobStatus,
    NotBlocked,
    OffboardingStarted,
    UserOffboarded,
)
from mdm_core.policy.staleness import StaleSweep
from mdm_core.posture.model import Ownership, Platform
from mdm_core.read_model.wiring import read_model_of
from mdm_core.runtime import MdmCore
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.sql.tables import offboarding_jobs, outbox, user_blocks
from tests.helpers.device_keys import DeviceKey
from tests.helpers.enrolled import enroll_device
from tests.unit.mdm_core.offboarding.helpers import (
    ack,
    add_user,
    audit_actions,
    check_in,
    commands_of,
    now,
)


def offboard(core: MdmCore, user_id: str = "alice", **kw: Any) -> Any:
    args: dict[str, Any] = {
        "user_id": user_id,
        "trigger": "admin",
        "source_ref": None,
        "effective_at": None,
        "actor": "admin:root",
    }
    args.update(kw)
    with core.storage.unit_of_work() as uow:
        return core.offboarding.request(uow, **args)


def status_of(core: MdmCore, device_id: str) -> DeviceStatus:
    with core.storage.unit_of_work() as uow:
        device = uow.devices.get(device_id)
    assert device is not None
    return device.status


def events(core: MdmCore, kind: str) -> list[dict[str, Any]]:
    with core.database.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.payload).where(outbox.c.type == kind)).all()
    return [r.payload for r in rows]


@pytest.fixture
def alice(core: MdmCore) -> dict[str, str]:
    add_user(core.directory, "alice", ("staff",))
    byod = enroll_device(core, "alice", ownership=Ownership.BYOD, platform=Platform.IOS)
    corp = enroll_device(core, "alice", ownership=Ownership.CORPORATE, platform=Platform.MACOS)
    return {"byod": byod.device_id, "corp": corp.device_id}


def test_at_once_blocks_revokes_and_queues_one_command_per_device(
    core: MdmCore, alice: dict[str, str]
) -> None:
    reads = read_model_of(core).reads
    assert reads.decision_state("alice", alice["corp"]).user.active  # cached: active
    job = offboard(core, reason="left the company")
    assert job.status is JobStatus.RUNNING and job.groups == ("staff",)
    # Logins blocked at once: the mirror's user context and the cached read model.
    assert reads.decision_state("alice", alice["corp"]).user.active is False
    with core.storage.unit_of_work() as uow:
        user = core.directory.user_context("alice")
        assert user is not None and user.active is False
        assert uow.offboarding.blocked("alice") is not None
    # user.offboarded written with the job id (signals map it to RISC account-disabled).
    [offboarded] = events(core, "user.offboarded")
    assert offboarded["job_id"] == job.id and offboarded["user_id"] == "alice"
    # BYOD: a selective wipe; corporate (shipped policy lock_and_retire): a lock.
    [byod] = commands_of(core, alice["byod"])
    [corp] = commands_of(core, alice["corp"])
    assert (byod["type"], byod["status"]) == ("selective_wipe", "queued")
    assert (corp["type"], corp["status"]) == ("lock", "queued")
    assert byod["idempotency_key"] == f"offboarding:{job.id}:{alice['byod']}"
    # The selective wipe names the work container and managed data only.
    wipe = core.commands.get(byod["id"])
    assert wipe is not None and wipe.payload["work_container"] is True
    assert set(wipe.payload) == {
        "reason",
        "work_container",
        "apps",
        "certificates",
        "configurations",
    }
    # Nothing retired before the device answered.
    assert status_of(core, alice["byod"]) is DeviceStatus.ACTIVE
    assert status_of(core, alice["corp"]) is DeviceStatus.ACTIVE
    actions = audit_actions(core)
    assert ("admin:root", "offboarding.requested", "alice") in actions
    assert (f"offboarding:{job.id}", "offboarding.started", "alice") in actions
    queued = {a for a in actions if a[1] == "offboarding.device_queued"}
    assert queued == {
        (f"offboarding:{job.id}", "offboarding.device_queued", d) for d in alice.values()
    }
    revoked = audit_actions(core, "credentials.revoked")
    assert (f"offboarding:{job.id}", "credentials.revoked", "user:alice") in revoked


def test_retire_only_after_the_acknowledgement_then_done(
    core: MdmCore, alice: dict[str, str]
) -> None:
    job = offboard(core)
    assert core.offboarding.run_due() == 0  # nothing acknowledged yet: nothing moves
    assert status_of(core, alice["corp"]) is DeviceStatus.ACTIVE
    delivered = check_in(core, alice["corp"])
    assert [c.type.value for c in delivered] == ["lock"]
    assert core.offboarding.run_due() == 0  # delivered is not acknowledged
    ack(core, delivered[0])
    assert core.offboarding.run_due() == 1
    assert status_of(core, alice["corp"]) is DeviceStatus.RETIRED
    [wipe] = check_in(core, alice["byod"])
    assert wipe.type.value == "selective_wipe"
    ack(core, wipe)
    assert core.offboarding.run_due() == 2  # the retire, then the job is done
    assert status_of(core, alice["byod"]) is DeviceStatus.RETIRED
    assert core.offboarding.run_due() == 0  # idempotent: nothing repeats
    [report] = core.offboarding.status("alice")
    assert report.job.status is JobStatus.DONE and report.blocked
    states = {d.device.device_id: d.device.state for d in report.devices}
    assert states == {alice["byod"]: DeviceState.RETIRED, alice["corp"]: DeviceState.RETIRED}
    times = {d.device.device_id: d.commands[0].times for d in report.devices}
    assert set(times[alice["corp"]]) == {"queued", "delivered", "acknowledged"}
    done = [a for a in audit_actions(core) if a[1] == "offboarding.done"]
    assert done == [(f"offboarding:{job.id}", "offboarding.done", "alice")]
    assert len([a for a in audit_actions(core) if a[1] == "offboarding.device_retired"]) == 2


def test_an_error_answer_fails_the_device_and_does_not_retire_it(
    core: MdmCore, alice: dict[str, str]
) -> None:
    offboard(core)
    [lock] = check_in(core, alice["corp"])
    ack(core, lock, status="error")
    core.offboarding.run_due()
    assert status_of(core, alice["corp"]) is not DeviceStatus.RETIRED
    [report] = core.offboarding.status("alice")
    corp = next(d for d in report.devices if d.device.device_id == alice["corp"])
    assert corp.device.state is DeviceState.FAILED


def test_triggered_twice_is_one_job_and_one_command_per_device(
    core: MdmCore, alice: dict[str, str]
) -> None:
    first = offboard(core, trigger="hr:generic", source_ref="evt-1")
    again = offboard(core, trigger="hr:generic", source_ref="evt-1")
    other = offboard(core, trigger="directory:scim", source_ref="scim-9")
    assert first.id == again.id == other.id
    with core.database.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(offboarding_jobs)).scalar() == 1
    assert len(commands_of(core, alice["byod"])) == 1
    assert len(commands_of(core, alice["corp"])) == 1
    assert len(events(core, "user.offboarded")) == 1


def test_offline_for_30_days_still_gets_its_command_at_the_next_checkin(
    core: MdmCore, alice: dict[str, str]
) -> None:
    check_in(core, alice["byod"])  # it reported once, then went silent
    offboard(core)
    later = now() + timedelta(days=30)
    # The stale-posture sweep blocks the silent device (its verdict), which must not stop
    # the delivery; nor does run_due retire anything meanwhile.
    swept = StaleSweep(core.storage, core.policies.current, clock=lambda: later).run_once()
    assert swept is not None and swept.blocked == [alice["byod"]]
    with core.storage.unit_of_work() as uow:  # and it is quarantined meanwhile, too
        change_status(uow, alice["byod"], DeviceStatus.QUARANTINED, reason="x", at=later)
    assert core.offboarding.run_due(now=later) == 0
    assert status_of(core, alice["byod"]) is not DeviceStatus.RETIRED
    delivered = check_in(core, alice["byod"], later)
    assert [c.type.value for c in delivered] == ["selective_wipe"]
    ack(core, delivered[0], later)
    assert core.offboarding.run_due(now=later) >= 1
    assert status_of(core, alice["byod"]) is DeviceStatus.RETIRED


def test_scheduled_then_cancelled(core: MdmCore, alice: dict[str, str]) -> None:
    when = now() + timedelta(days=7)
    job = offboard(core, effective_at=when, trigger="hr:bamboohr", source_ref="emp-1")
    assert job.status is JobStatus.SCHEDULED
    # Nothing at once: not blocked, no commands, no event.
    with core.storage.unit_of_work() as uow:
        assert uow.offboarding.blocked("alice") is None
    assert commands_of(core, alice["corp"]) == [] and events(core, "user.offboarded") == []
    assert core.offboarding.run_due() == 0  # not due yet
    cancelled = core.offboarding.cancel(job.id, actor="admin:root", reason="rehired")
    assert cancelled.status is JobStatus.CANCELLED
    assert core.offboarding.run_due(now=when + timedelta(hours=1)) == 0  # never fires
    assert commands_of(core, alice["corp"]) == []
    assert ("admin:root", "offboarding.cancelled", "alice") in audit_actions(core)
    # A new trigger after the cancel makes a new job.
    assert offboard(core).id != job.id


def test_scheduled_then_fired(core: MdmCore, alice: dict[str, str]) -> None:
    when = now() + timedelta(days=1)
    job = offboard(core, effective_at=when)
    assert core.offboarding.run_due(now=when + timedelta(seconds=1)) == 1
    fired = core.offboarding.get(job.id)
    assert fired is not None and fired.status is JobStatus.RUNNING
    assert [c["type"] for c in commands_of(core, alice["corp"])] == ["lock"]
    assert core.directory.user_context("alice").active is False  # type: ignore[union-attr]
    with pytest.raises(OffboardingStarted):
        core.offboarding.cancel(job.id, actor="admin:root", reason="too late")
    assert ("admin:root", "offboarding.cancel_refused", "alice") in audit_actions(core)
    assert core.offboarding.get(job.id).status is JobStatus.RUNNING  # type: ignore[union-attr]


def test_an_immediate_trigger_brings_a_scheduled_job_forward(
    core: MdmCore, alice: dict[str, str]
) -> None:
    scheduled = offboard(core, effective_at=now() + timedelta(days=14))
    now_job = offboard(core, trigger="directory:scim", source_ref="x")
    assert now_job.id == scheduled.id and now_job.status is JobStatus.RUNNING
    assert len(commands_of(core, alice["corp"])) == 1


def test_cancel_unknown_and_started_jobs_are_refused(core: MdmCore, alice: dict[str, str]) -> None:
    with pytest.raises(JobNotFound):
        core.offboarding.cancel("nope", actor="admin:root", reason="x")
    job = offboard(core)
    with pytest.raises(OffboardingStarted):
        core.offboarding.cancel(job.id, actor="admin:root", reason="x")


def test_the_block_survives_a_sync_and_a_recreated_account_until_reinstated(
    core: MdmCore, alice: dict[str, str]
) -> None:
    reads = read_model_of(core).reads
    offboard(core)
    # A later sync says the account is active; then it is deleted and re-created.
    add_user(core.directory, "alice", ("staff",), active=True)
    assert reads.decision_state("alice", None).user.active is False
    with core.storage.unit_of_work() as uow:
        uow.directory_users.delete("alice")
    core.directory.upsert_user(
        DirectoryUser(id="alice", username="alice", active=True, source="scim", updated_at=now())
    )
    assert reads.decision_state("alice", None).user.active is False
    with pytest.raises(UserOffboarded):
        core.enrollment.create_token("alice", Ownership.BYOD, None, timedelta(hours=1), "admin:x")
    core.offboarding.reinstate("alice", actor="admin:root", reason="came back")
    assert reads.decision_state("alice", None).user.active is True
    core.enrollment.create_token("alice", Ownership.BYOD, None, timedelta(hours=1), "admin:x")
    assert ("admin:root", "offboarding.reinstated", "alice") in audit_actions(core)
    with pytest.raises(NotBlocked):
        core.offboarding.reinstate("alice", actor="admin:root", reason="again")


def test_enrollment_is_refused_for_an_offboarded_user(core: MdmCore, alice: dict[str, str]) -> None:
    token = core.enrollment.create_token(
        "alice", Ownership.CORPORATE, None, timedelta(hours=1), "admin:x"
    )
    offboard(core)
    key = DeviceKey.generate()
    with pytest.raises(UserOffboarded) as refused:
        core.enrollment.enroll(
            EnrollmentRequest(
                csr_pem=key.csr_pem(), platform=Platform.MACOS, ownership=Ownership.CORPORATE,
                token=token,
            )
        )  # fmt: skip
    assert refused.value.status == 403 and "offboarded" in refused.value.message
    with core.storage.unit_of_work() as uow:  # the token was not spent
        from mdm_core.device.enrollment import hash_token

        record = uow.enrollment_tokens.get_token(hash_token(token))
        assert record is not None and record.used_at is None
    with pytest.raises(UserOffboarded):
        core.enrollment.register_serial("SN-9", Platform.MACOS, "alice", "admin:x")


def test_a_failing_step_rolls_the_whole_request_back(core: MdmCore, alice: dict[str, str]) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with core.storage.unit_of_work() as uow:
            core.offboarding.request(
                uow, user_id="alice", trigger="admin", source_ref=None, effective_at=None,
                actor="admin:root",
            )  # fmt: skip
            raise Boom  # the caller's own write fails after request()
    with core.database.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(offboarding_jobs)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(user_blocks)).scalar() == 0
    assert commands_of(core, alice["corp"]) == [] and events(core, "user.offboarded") == []
    assert core.directory.user_context("alice").active is True  # type: ignore[union-attr]


def test_bad_input_is_refused_and_changes_nothing(core: MdmCore, alice: dict[str, str]) -> None:
    for bad in (
        {"user_id": "bad user!"},
        {"trigger": "hr:evil"},
        {"effective_at": now().replace(tzinfo=None)},
        {"source_ref": "x" * 300},
    ):
        with pytest.raises(InvalidOffboarding):
            offboard(core, **bad)
    with pytest.raises(NotFound):
        offboard(core, user_id="nobody")
    with core.database.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(offboarding_jobs)).scalar() == 0


def test_retired_devices_are_left_alone(core: MdmCore, alice: dict[str, str]) -> None:
    core.enrollment.revoke_device(alice["corp"], actor="admin:root", reason="lost")
    job = offboard(core)
    assert commands_of(core, alice["corp"]) == []
    devices = {d.device.device_id for d in core.offboarding.status("alice")[0].devices}
    assert devices == {alice["byod"]}
    assert job.status is JobStatus.RUNNING


def test_a_warmed_read_model_sees_the_block(core: MdmCore, alice: dict[str, str]) -> None:
    """A worker starting after the offboarding warms its cache in bulk: the user is inactive
    there too (not only on the per-user miss path)."""
    check_in(core, alice["corp"])
    offboard(core)
    add_user(core.directory, "alice", ("staff",), active=True)  # a sync says active
    model = read_model_of(core)
    model.cache.clear()
    report = model.reads.warm(100)
    assert report.users == 1
    assert model.reads.decision_state("alice", alice["corp"]).user.active is False


def test_installs_still_queued_are_cancelled_so_the_wipe_is_not_undone(
    core: MdmCore, alice: dict[str, str]
) -> None:
    """An install_app queued before the offboarding has a lower priority than the selective
    wipe, so the same check-in would hand it over after the wipe and put managed data back:
    the job cancels it."""
    install = core.commands.enqueue(
        alice["byod"], "install_app", {"app_id": "com.example.crm"}, created_by="admin:root"
    )
    job = offboard(core)
    cancelled = core.commands.get(install.id)
    assert cancelled is not None and cancelled.status.value == "cancelled"
    [wipe] = check_in(core, alice["byod"])
    assert wipe.type.value == "selective_wipe"
    delivered = {c.id for c in core.commands.for_device(alice["byod"]) if c.delivered_at}
    assert install.id not in delivered
    assert (f"offboarding:{job.id}", "offboarding.device_queued", alice["byod"]) in (
        audit_actions(core)
    )


def test_reinstating_a_running_job_cancels_what_the_devices_have_not_acknowledged(
    core: MdmCore, alice: dict[str, str]
) -> None:
    """The user is back (a wrong trigger, a rehire): no device of theirs may be locked,
    wiped or retired after that. What was fetched and not acknowledged is cancelled and the
    report says it may have run; nothing is retired even when its late ack comes in."""
    job = offboard(core)
    [lock] = check_in(core, alice["corp"])  # fetched, not acknowledged
    core.offboarding.reinstate("alice", actor="admin:root", reason="wrong person")
    [report] = core.offboarding.status("alice")
    assert report.job.status is JobStatus.CANCELLED and not report.blocked
    rows = {d.device.device_id: d.device for d in report.devices}
    assert {r.state for r in rows.values()} == {DeviceState.CANCELLED}
    assert rows[alice["byod"]].detail == "reinstated: selective_wipe cancelled"
    assert rows[alice["corp"]].detail == (
        "reinstated: lock cancelled (already fetched: it may have run)"
    )
    assert [c["status"] for c in commands_of(core, alice["byod"])] == ["cancelled"]
    assert [c["status"] for c in commands_of(core, alice["corp"])] == ["cancelled"]
    # The next check-ins hand out nothing; a late ack of the fetched lock is refused (the
    # command is cancelled) and retires nothing.
    assert check_in(core, alice["byod"]) == [] and check_in(core, alice["corp"]) == []
    with pytest.raises(IllegalTransition):
        ack(core, lock)
    assert core.offboarding.run_due() == 0
    assert status_of(core, alice["byod"]) is DeviceStatus.ACTIVE
    assert status_of(core, alice["corp"]) is DeviceStatus.ACTIVE
    actor = f"offboarding:{job.id}"
    cancelled = [a for a in audit_actions(core) if a[1] == "offboarding.device_cancelled"]
    assert sorted(cancelled) == sorted(
        (actor, "offboarding.device_cancelled", d) for d in alice.values()
    )
    # A new trigger later is a new job, with new commands.
    again = offboard(core, trigger="hr:generic", source_ref="evt-2")
    assert again.id != job.id and again.status is JobStatus.RUNNING
    assert [c["status"] for c in commands_of(core, alice["byod"])] == ["cancelled", "queued"]


def test_reinstating_after_an_ack_but_before_the_retire_keeps_the_device(
    core: MdmCore, alice: dict[str, str]
) -> None:
    offboard(core)
    [lock] = check_in(core, alice["corp"])
    ack(core, lock)  # locked, acknowledged; the runner has not retired it yet
    core.offboarding.reinstate("alice", actor="admin:root", reason="came back")
    assert core.offboarding.run_due() == 0
    assert status_of(core, alice["corp"]) is DeviceStatus.ACTIVE  # not retired: unlock it
    [report] = core.offboarding.status("alice")
    corp = next(d for d in report.devices if d.device.device_id == alice["corp"])
    assert (corp.device.state, corp.device.detail) == (
        DeviceState.CANCELLED,
        "reinstated: lock acknowledged",
    )


def test_a_finished_job_is_left_as_it_is_by_a_reinstatement(
    core: MdmCore, alice: dict[str, str]
) -> None:
    offboard(core)
    for device_id in alice.values():
        [command] = check_in(core, device_id)
        ack(core, command)
    core.offboarding.run_due()
    core.offboarding.reinstate("alice", actor="admin:root", reason="rehired")
    [report] = core.offboarding.status("alice")
    assert report.job.status is JobStatus.DONE and not report.blocked
    assert {d.device.state for d in report.devices} == {DeviceState.RETIRED}
