"""Poll delivery over HTTP (RFC 8936) with outbox events written the way the core writes
them; the acknowledgement, setErrs, the bounded long poll, and the delivery metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from flask import Flask
from prometheus_client import REGISTRY

from mdm_core.bus.events import DomainEvent
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.signals.store import open_store
from tests.unit.posture_gateway.signals.conftest import (
    DCC,
    DISABLED,
    POLL,
    REVOKED,
    add_events,
    bearer,
    core_of,
    flip,
    signals_state,
    token,
)


@pytest.fixture
def signals_extra() -> dict[str, Any]:
    return {"poll_max_wait": "1s"}


def _poll_stream(app: Flask, tok: str, events: list[str]) -> str:
    created = app.test_client().post(
        "/ssf/streams",
        json={"events_requested": events, "delivery": {"method": POLL}},
        headers=bearer(tok),
    )
    assert created.status_code == 201
    return str(created.json["stream_id"])


def _poll(app: Flask, tok: str, sid: str, **body: Any) -> Any:
    response = app.test_client().post(f"/ssf/poll/{sid}", json=body, headers=bearer(tok))
    assert response.status_code == 200, response.json
    return response.json


def _count(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "posture_ssf_deliveries_total", {"method": "poll", "outcome": outcome}
        )
        or 0.0
    )


def test_poll_ack_and_errors(app: Flask) -> None:
    tok = token(app, "rx-a", "ssf.read ssf.manage")
    sid = _poll_stream(app, tok, [DCC, REVOKED, DISABLED])
    add_events(
        app,
        flip("dev-1"),
        DomainEvent(
            type="access.revoked",
            subject="u-alice",
            payload={"scope": "user", "user_id": "u-alice", "device_id": None, "reason": "admin"},
        ),
        DomainEvent(
            type="directory.account_disabled", subject="u-alice", payload={"user_id": "u-alice"}
        ),
    )
    got = _poll(app, tok, sid, maxEvents=2, returnImmediately=True)
    assert len(got["sets"]) == 2 and got["moreAvailable"] is True
    public = signals_state(app).poll.keys.active("RS256").public_key
    for jti, set_token in got["sets"].items():
        assert jwt.get_unverified_header(set_token)["typ"] == "secevent+jwt"
        claims = jwt.decode(
            set_token, public, algorithms=["RS256"], audience="https://rx-a.example"
        )
        assert claims["jti"] == jti and claims["iss"] == "https://gw.example"
    first, second = list(got["sets"])
    delivered, failed = _count("delivered"), _count("failed")
    rest = _poll(
        app,
        tok,
        sid,
        ack=[first],
        setErrs={second: {"err": "invalid_audience", "description": "not us"}},
        returnImmediately=True,
    )
    assert len(rest["sets"]) == 1 and rest["moreAvailable"] is False
    assert first not in rest["sets"] and second not in rest["sets"]
    assert _count("delivered") == delivered + 1 and _count("failed") == failed + 1
    with open_store(core_of(app).database) as store:
        states = store.delivery_states(sid)
    assert states[first] == "delivered" and states[second] == "failed"
    third = next(iter(rest["sets"]))
    claims = jwt.decode(rest["sets"][third], options={"verify_signature": False})
    assert claims["sub_id"] == {"format": "iss_sub", "iss": "https://gw.example", "sub": "u-alice"}


def test_long_poll_is_bounded(app: Flask) -> None:
    tok = token(app, "rx-a", "ssf.read")
    sid = _poll_stream(app, token(app, "rx-a"), [DCC])
    started = time.monotonic()
    got = _poll(app, tok, sid)  # nothing queued: waits poll_max_wait (1 s), then answers
    assert got == {"sets": {}, "moreAvailable": False}
    assert time.monotonic() - started >= 0.9


def test_poll_refuses_push_streams_and_bad_bodies(app: Flask) -> None:
    tok = token(app, "rx-a")
    c = app.test_client()
    push = c.post(
        "/ssf/streams",
        json={"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://rx/e"}},
        headers=bearer(tok),
    ).json["stream_id"]
    assert c.post(f"/ssf/poll/{push}", json={}, headers=bearer(tok)).status_code == 400
    sid = _poll_stream(app, tok, [DCC])
    for body in (
        {"maxEvents": -1},
        {"ack": "x"},
        {"setErrs": {"j": {"err": ""}}},
        {"ack": ["j" * 65]},
    ):
        assert c.post(f"/ssf/poll/{sid}", json=body, headers=bearer(tok)).status_code == 400


def test_an_offboarding_job_queues_risc_account_disabled(app: Flask) -> None:
    """The real job, not a hand-written event: ``user.offboarded``, written in the job's
    unit of work, reaches the receiver as RISC account-disabled for the user."""
    tok = token(app, "rx-a", "ssf.read ssf.manage")
    sid = _poll_stream(app, tok, [DISABLED])
    core = core_of(app)
    core.directory.upsert_user(
        DirectoryUser(
            id="u-carol", username="carol", active=True, source="local",
            updated_at=datetime.now(UTC),
        )
    )  # fmt: skip
    with core.storage.unit_of_work() as uow:
        job = core.offboarding.request(
            uow, user_id="u-carol", trigger="hr:generic", source_ref="e-9", effective_at=None,
            actor="hr:generic",
        )  # fmt: skip
    assert job.status.value == "running"
    got = _poll(app, tok, sid, returnImmediately=True)
    [set_token] = got["sets"].values()
    claims = jwt.decode(set_token, options={"verify_signature": False})
    assert list(claims["events"]) == [DISABLED]
    assert claims["sub_id"]["sub"] == "u-carol"
