"""The HR webhooks over HTTP: BambooHR status and termination-date changes offboard, schedule,
reschedule and cancel; the generic shape; unmatched employees recorded and listed; a
redelivery answers with the stored outcome and changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from prometheus_client import REGISTRY

from tests.integration.hr.conftest import (
    EMAIL,
    HrApp,
    add_user,
    body_of,
    employee,
    post_bamboo,
    post_generic,
)


def _events(answer: object) -> list[dict[str, object]]:
    assert isinstance(answer, dict)
    events = answer["events"]
    assert isinstance(events, list)
    return events


def test_status_inactive_offboards_once(hr_app: HrApp) -> None:
    body = body_of([employee(status="Inactive", workEmail=EMAIL.upper())])
    answer = post_bamboo(hr_app.client, body)
    assert answer.status_code == 200, answer.json
    assert answer.json is not None and answer.json["replayed"] is False
    (event,) = _events(answer.json)
    assert event["outcome"] == "offboarding_started"
    assert event["user_id"] == "u-alice"
    assert event["source_ref"] == "bamboohr:101:status:inactive"
    (job,) = hr_app.jobs()
    assert job.id == event["job_id"] and job.trigger == "hr:bamboohr"
    assert job.status in ("running", "done")
    after = hr_app.counts()
    assert after["hr_deliveries"] == 1 and after["jobs"] == 1
    assert after["commands"] >= 1  # the BYOD device's selective wipe
    (audited,) = hr_app.audit("hr.employee_event")
    assert (audited.actor, audited.outcome, audited.subject) == (
        "hr:bamboohr",
        "offboarding_started",
        "u-alice",
    )
    # BambooHR retries the same body (a fresh timestamp, the same bytes): the first outcome.
    again = post_bamboo(hr_app.client, body)
    assert again.status_code == 200
    assert again.json is not None and again.json["replayed"] is True
    assert _events(again.json) == _events(answer.json)
    assert hr_app.counts() == after
    # Another body about the same fact (a later change of another field): no second job.
    later = post_bamboo(
        hr_app.client, body_of([employee(status="Inactive", workEmail=EMAIL, jobTitle="x")])
    )
    assert _events(later.json)[0]["outcome"] == "already_offboarding"
    assert hr_app.counts()["jobs"] == 1


def test_termination_date_schedules_moves_cancels_and_schedules_again(hr_app: HrApp) -> None:
    first = (date.today() + timedelta(days=10)).isoformat()
    moved = (date.today() + timedelta(days=20)).isoformat()

    sent = iter(range(100))

    def send(termination: str | None) -> dict[str, object]:
        # each a new change (BambooHR's bodies differ); the same bytes would be a redelivery
        change = employee(terminationDate=termination, workEmail=EMAIL, n=next(sent))
        answer = post_bamboo(hr_app.client, body_of([change]))
        assert answer.status_code == 200, answer.json
        return _events(answer.json)[0]

    scheduled = send(first)
    assert scheduled["outcome"] == "offboarding_scheduled"
    assert scheduled["effective_at"] == f"{first}T00:00:00+00:00"
    assert hr_app.counts()["commands"] == 0  # nothing happens before the date
    rescheduled = send(moved)
    assert rescheduled["outcome"] == "offboarding_rescheduled"
    jobs = hr_app.jobs()
    assert [j.status for j in jobs] == ["cancelled", "scheduled"]
    assert jobs[1].effective_at.date().isoformat() == moved
    cancelled = send("0000-00-00")
    assert cancelled["outcome"] == "offboarding_cancelled"
    assert [j.status for j in hr_app.jobs()] == ["cancelled", "cancelled"]
    assert send("")["outcome"] == "nothing_to_cancel"
    again = send(first)  # the first date again: scheduled again (not the cancelled job)
    assert again["outcome"] == "offboarding_scheduled"
    assert again["source_ref"] == f"bamboohr:101:termination:{first}:r2"
    assert [j.status for j in hr_app.jobs()] == ["cancelled", "cancelled", "scheduled"]
    assert hr_app.counts()["commands"] == 0
    assert len(hr_app.audit("offboarding.cancelled")) == 2


def test_a_reached_termination_date_offboards_now(hr_app: HrApp) -> None:
    today = date.today().isoformat()
    answer = post_bamboo(hr_app.client, body_of([employee(terminationDate=today, workEmail=EMAIL)]))
    assert _events(answer.json)[0]["outcome"] == "offboarding_started"
    assert hr_app.jobs()[0].status in ("running", "done")


def _metric(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "posture_hr_events_total", {"source": "bamboohr", "outcome": outcome}
    )
    return value or 0.0


def test_unmatched_and_ambiguous_are_recorded_audited_counted_and_listed(hr_app: HrApp) -> None:
    add_user(hr_app.core, "u-bob1", "bob1", "bob@example.com")
    add_user(hr_app.core, "u-bob2", "bob2", "BOB@example.com")
    unmatched_before, ambiguous_before = _metric("unmatched"), _metric("ambiguous")
    body = body_of(
        [
            employee("201", status="Inactive", workEmail="nobody@example.com"),
            employee("202", status="Inactive", workEmail="bob@example.com"),
            employee("203", status="Inactive"),  # the match field not posted
            employee("204", firstName="Al", workEmail=EMAIL),  # nothing about offboarding
            employee("205", terminationDate="31/12/2026", workEmail=EMAIL),
        ]
    )
    answer = post_bamboo(hr_app.client, body)
    assert answer.status_code == 200
    outcomes = [e["outcome"] for e in _events(answer.json)]
    assert outcomes == ["unmatched", "ambiguous", "unmatched", "ignored", "invalid"]
    assert hr_app.counts()["jobs"] == 0  # no guess
    assert _metric("unmatched") == unmatched_before + 2
    assert _metric("ambiguous") == ambiguous_before + 1
    audited = {(a.subject, a.outcome) for a in hr_app.audit("hr.employee_event")}
    assert ("hr-employee:bamboohr:201", "unmatched") in audited
    assert ("hr-employee:bamboohr:202", "ambiguous") in audited
    listed = hr_app.client.get(
        "/admin/api/hr/deliveries?outcome=unmatched",
        headers={"Authorization": f"Bearer {hr_app.helpdesk_token}"},
    )
    assert listed.status_code == 200, listed.json
    assert listed.json is not None
    rows = listed.json["deliveries"]
    assert {r["employee_ref"] for r in rows} == {"201", "203"}
    assert rows[0]["detail"]["match_attribute"] == "email"


def test_admin_listing_refusals(hr_app: HrApp) -> None:
    client = hr_app.client
    assert client.get("/admin/api/hr/deliveries").status_code == 401
    bearer = {"Authorization": f"Bearer {hr_app.helpdesk_token}"}
    for query in ("outcome=bogus", "source=workday", "limit=0", "limit=501", "limit=x"):
        refused = client.get(f"/admin/api/hr/deliveries?{query}", headers=bearer)
        assert refused.status_code == 400, query
        assert refused.json is not None and refused.json["error"] == "invalid_request"


def test_generic_offboard_schedule_cancel_and_event_id_reuse(hr_app: HrApp) -> None:
    later = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    payload = {
        "event_id": "evt-1",
        "type": "employee.offboard",
        "employee": {"username": "alice"},
        "effective_at": later.isoformat(),
    }
    answer = post_generic(hr_app.client, payload)
    assert answer.status_code == 200, answer.json
    assert _events(answer.json)[0]["outcome"] == "offboarding_scheduled"
    assert post_generic(hr_app.client, payload).json["replayed"] is True  # type: ignore[index]
    before = hr_app.counts()
    reused = post_generic(hr_app.client, {**payload, "employee": {"user_id": "u-alice"}})
    assert reused.status_code == 409
    assert reused.json == {
        "error": "event_id_reused",
        "reason": "this event_id was delivered with another body",
    }
    assert hr_app.counts() == before
    cancel = {
        "event_id": "evt-2",
        "type": "employee.offboard_cancelled",
        "employee": {"email": EMAIL},
    }
    assert _events(post_generic(hr_app.client, cancel).json)[0]["outcome"] == (
        "offboarding_cancelled"
    )
    assert [j.status for j in hr_app.jobs()] == ["cancelled"]
    now = {"event_id": "evt-3", "type": "employee.offboard", "employee": {"user_id": "u-alice"}}
    started = _events(post_generic(hr_app.client, now).json)[0]
    assert started["outcome"] == "offboarding_started"
    assert hr_app.counts()["commands"] >= 1
