"""One HR delivery about several employees: each employee's event is its own unit of work. A
failure for one (a store error while offboarding them) leaves the others applied, the answer
is 503 ``not_all_applied``, and the sender's retry applies only the missing one. Records past
``hr.delivery_retention`` are purged after an accepted delivery, at most once a minute."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from posture_gateway.hr.state import EXTENSION, HrState
from posture_gateway.hr.store import HrDeliveryStore
from posture_gateway.hr.tables import hr_deliveries
from tests.integration.hr.conftest import EMAIL, HrApp, add_user, body_of, employee, post_bamboo

BOB = "bob@example.com"


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _failing_for(
    hr_app: HrApp, monkeypatch: pytest.MonkeyPatch, user_id: str
) -> Callable[[], None]:
    """Make offboarding ``user_id`` fail as a lost database connection would (after the
    other writes of the unit were made); the returned function heals it."""
    offboarding = hr_app.core.offboarding
    real = offboarding.request
    broken = {"on": True}

    def request(uow: Any, **kwargs: Any) -> Any:
        job = real(uow, **kwargs)  # its writes are made, then the connection "drops"
        if broken["on"] and kwargs["user_id"] == user_id:
            raise OperationalError("INSERT ...", {}, Exception("server closed the connection"))
        return job

    monkeypatch.setattr(offboarding, "request", request)
    return lambda: broken.update(on=False)


def test_one_employee_failing_leaves_the_others_applied_and_the_retry_applies_it(
    hr_app: HrApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(hr_app.core, "u-bob", "bob", BOB)
    heal = _failing_for(hr_app, monkeypatch, "u-bob")
    failed_before = _sample("posture_hr_event_failures_total", {"source": "bamboohr"})
    body = body_of(
        [
            employee("101", status="Inactive", workEmail=EMAIL),
            employee("102", status="Inactive", workEmail=BOB),
        ]
    )

    first = post_bamboo(hr_app.client, body)
    assert first.status_code == 503, first.json
    assert first.json is not None and first.json["error"] == "not_all_applied"
    assert "1 of 2" in first.json["reason"]
    assert _sample("posture_hr_event_failures_total", {"source": "bamboohr"}) == failed_before + 1
    # partly applied is not a refusal: no refusal is counted for it
    assert not _sample(
        "posture_hr_refused_total", {"source": "bamboohr", "reason": "not_all_applied"}
    )
    # Alice's unit committed whole; nothing of Bob's did (no job, no record, no audit entry).
    assert [j.user_id for j in hr_app.jobs()] == ["u-alice"]
    assert hr_app.counts()["hr_deliveries"] == 1
    assert {a.subject for a in hr_app.audit("hr.employee_event")} == {"u-alice"}
    commands_after_alice = hr_app.counts()["commands"]
    assert commands_after_alice >= 1  # Alice's BYOD selective wipe

    # The same failure again: still 503, and Alice is not offboarded twice.
    again = post_bamboo(hr_app.client, body)
    assert again.status_code == 503
    assert len(hr_app.jobs()) == 1 and hr_app.counts()["commands"] == commands_after_alice

    heal()
    retried = post_bamboo(hr_app.client, body)
    assert retried.status_code == 200, retried.json
    assert retried.json is not None and retried.json["replayed"] is False
    events = retried.json["events"]
    assert [(e["employee_ref"], e["user_id"], e["outcome"]) for e in events] == [
        ("101", "u-alice", "offboarding_started"),
        ("102", "u-bob", "offboarding_started"),
    ]
    assert sorted(j.user_id for j in hr_app.jobs()) == ["u-alice", "u-bob"]
    assert hr_app.counts()["hr_deliveries"] == 2
    assert sorted(a.subject for a in hr_app.audit("hr.employee_event")) == ["u-alice", "u-bob"]

    # Now the delivery is recorded whole: a redelivery is a replay and changes nothing.
    counts = hr_app.counts()
    replay = post_bamboo(hr_app.client, body)
    assert replay.status_code == 200
    assert replay.json is not None and replay.json["replayed"] is True
    assert replay.json["events"] == events
    assert hr_app.counts() == counts


def test_a_delivery_whose_only_event_fails_is_a_store_outage_with_nothing_written(
    hr_app: HrApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_for(hr_app, monkeypatch, "u-alice")
    before = hr_app.counts()
    answer = post_bamboo(hr_app.client, body_of([employee(status="Inactive", workEmail=EMAIL)]))
    assert answer.status_code == 503
    assert answer.json is not None and answer.json["error"] == "temporarily_unavailable"
    assert hr_app.counts() == before
    assert hr_app.audit("hr.employee_event") == []


def _age_every_record(hr_app: HrApp, by: timedelta) -> None:
    """Move every record's ``received_at`` back by ``by`` (read and written as values: SQLite
    has no interval arithmetic)."""
    with hr_app.core.database.engine.begin() as conn:
        rows = conn.execute(
            select(
                hr_deliveries.c.source,
                hr_deliveries.c.delivery_key,
                hr_deliveries.c.seq,
                hr_deliveries.c.received_at,
            )
        ).all()
        for row in rows:
            conn.execute(
                update(hr_deliveries)
                .where(
                    hr_deliveries.c.source == row.source,
                    hr_deliveries.c.delivery_key == row.delivery_key,
                    hr_deliveries.c.seq == row.seq,
                )
                .values(received_at=row.received_at - by)
            )


def _keys(hr_app: HrApp) -> set[str]:
    with hr_app.core.database.engine.connect() as conn:
        return {r.employee_ref for r in HrDeliveryStore(conn).list(limit=500)}


def test_records_past_the_retention_are_purged_at_most_once_a_minute(
    hr_app: HrApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = hr_app.app.extensions[EXTENSION].service
    assert isinstance(hr_app.app.extensions[EXTENSION], HrState)
    assert service.retention == timedelta(days=90)  # the shipped default
    purged_before = _sample("posture_hr_records_purged_total")

    def send(ref: str) -> None:
        answer = post_bamboo(hr_app.client, body_of([employee(ref, firstName=ref)]))
        assert answer.status_code == 200, answer.json

    send("old")  # the first accepted delivery purges (nothing is old yet)
    _age_every_record(hr_app, timedelta(days=91))
    send("young")  # within the minute: no purge, the old record stays
    assert _keys(hr_app) == {"old", "young"}

    later = datetime.now(UTC) + timedelta(minutes=2)
    monkeypatch.setattr(service, "clock", lambda: later)
    send("later")  # a minute on: the record past 90 days goes, the others stay
    assert _keys(hr_app) == {"young", "later"}
    assert _sample("posture_hr_records_purged_total") == purged_before + 1

    # A purge that fails is logged; the delivery it follows is still accepted.
    _age_every_record(hr_app, timedelta(days=91))
    even_later = later + timedelta(minutes=2)
    monkeypatch.setattr(service, "clock", lambda: even_later)

    def broken(self: HrDeliveryStore, before: datetime, *, limit: int = 200) -> int:
        raise OperationalError("DELETE ...", {}, Exception("server closed the connection"))

    monkeypatch.setattr(HrDeliveryStore, "purge", broken)
    send("last")
    assert _keys(hr_app) == {"young", "later", "last"}
