"""The pure parts of the transmitter: SET claims and header, subject keys and matching, the
event mapping, and the retry schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from mdm_core.bus.events import DomainEvent
from posture_gateway.signals.mapping import Signal, signal_for
from posture_gateway.signals.push import retry_delay
from posture_gateway.signals.sets import check_signing_key, set_claims, sign_set
from posture_gateway.signals.subjects import (
    SubjectError,
    UserRef,
    candidate_keys,
    complex_subject,
    decide,
    subject_key,
    user_subject,
)
from posture_gateway.signals.vocabulary import (
    CAEP_DEVICE_COMPLIANCE_CHANGE,
    CAEP_SESSION_REVOKED,
    RISC_ACCOUNT_DISABLED,
)
from posture_gateway.signing.key_ring import KeyRing, generate_signing_key

ISS = "https://gw.example"
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _claims(**kw: object) -> dict[str, object]:
    base = set_claims(
        issuer=ISS,
        aud="https://rx.example",
        iat=1_700_000_000,
        jti="j-1",
        txn="evt-1",
        sub_id={"format": "opaque", "id": "s"},
        event_type=CAEP_SESSION_REVOKED,
        body={"event_timestamp": 1},
    )
    return {**base, **kw}


def test_set_header_and_claims() -> None:
    ring = KeyRing([generate_signing_key("RS256"), generate_signing_key("ES256")])
    token = sign_set(ring, _claims())
    header = jwt.get_unverified_header(token)
    assert header == {"typ": "secevent+jwt", "alg": "RS256", "kid": ring.active("RS256").kid}
    claims = jwt.decode(
        token, ring.active("RS256").public_key, algorithms=["RS256"], audience="https://rx.example"
    )
    assert set(claims) == {"iss", "aud", "iat", "jti", "txn", "sub_id", "events"}
    assert list(claims["events"]) == [CAEP_SESSION_REVOKED]


@pytest.mark.parametrize("extra", [{"sub": "x"}, {"exp": 1}])
def test_a_set_never_carries_sub_or_exp(extra: dict[str, object]) -> None:
    ring = KeyRing([generate_signing_key("RS256")])
    with pytest.raises(ValueError, match="neither sub nor exp"):
        sign_set(ring, _claims(**extra))


def test_the_signing_key_must_be_rsa() -> None:
    check_signing_key(KeyRing([generate_signing_key("RS256")]))
    with pytest.raises(Exception, match="RS256"):
        check_signing_key(KeyRing([generate_signing_key("ES256")]))


def test_subject_keys() -> None:
    assert (
        subject_key({"format": "email", "email": "Alice@Example.com"}) == "email:alice@example.com"
    )
    assert subject_key({"format": "iss_sub", "iss": ISS, "sub": "u"}) == f"iss_sub:{ISS}|u"
    assert subject_key({"format": "opaque", "id": "d"}) == "opaque:d"
    both = {
        "format": "complex",
        "user": {"format": "email", "email": "a@x"},
        "device": {"format": "opaque", "id": "d"},
    }
    assert subject_key(both) == "device=opaque:d&user=email:a@x"
    for bad in (
        None,
        "email",
        {"format": "phone_number", "phone_number": "+1"},
        {"format": "email"},
        {"format": "email", "email": "a@x", "extra": 1},
        {"format": "opaque", "id": "x" * 257},
        {"format": "complex"},
        {"format": "complex", "tenant": {"format": "opaque", "id": "t"}},
        {"format": "complex", "user": {"format": "complex", "user": {}}},
    ):
        with pytest.raises(SubjectError):
            subject_key(bad)


def test_candidate_keys_cover_every_way_to_name_the_event() -> None:
    user = UserRef("u-1", "Alice@Example.com")
    keys = candidate_keys(user, "d-1", ISS)
    for named in (
        {"format": "email", "email": "alice@example.com"},
        {"format": "iss_sub", "iss": ISS, "sub": "u-1"},
        {"format": "opaque", "id": "d-1"},
        {"format": "complex", "user": {"format": "email", "email": "alice@example.com"}},
        {
            "format": "complex",
            "user": {"format": "opaque", "id": "u-1"},
            "device": {"format": "opaque", "id": "d-1"},
        },
    ):
        assert subject_key(named) in keys
    other = {
        "format": "complex",
        "user": {"format": "opaque", "id": "u-2"},
        "device": {"format": "opaque", "id": "d-1"},
    }
    assert subject_key(other) not in keys


def test_decide() -> None:
    assert decide(True, []) and not decide(False, [])
    assert decide(False, [True]) and not decide(True, [False]) and not decide(True, [True, False])


def test_user_and_complex_subjects() -> None:
    assert user_subject(UserRef("u", "a@x"), ISS) == {"format": "email", "email": "a@x"}
    assert user_subject(UserRef("u"), ISS) == {"format": "iss_sub", "iss": ISS, "sub": "u"}
    assert complex_subject(None, "d", ISS) == {
        "format": "complex",
        "device": {"format": "opaque", "id": "d"},
    }
    with pytest.raises(SubjectError):
        complex_subject(None, None, ISS)


def _event(type_: str, subject: str = "d-1", **payload: object) -> DomainEvent:
    return DomainEvent(type=type_, subject=subject, payload=payload, occurred_at=AT)


def test_compliance_flips_only() -> None:
    def flip(prev: object, cur: str) -> Signal | None:
        return signal_for(
            _event(
                "compliance.changed", device_id="d-1", user_id="u-1", previous_state=prev, state=cur
            )
        )

    for prev, cur in (
        (None, "noncompliant"),
        ("unknown", "noncompliant"),
        ("noncompliant", "quarantined"),
        ("compliant", "compliant"),
    ):
        assert flip(prev, cur) is None
    down = flip("compliant", "quarantined")
    assert down is not None
    assert down.event_type == CAEP_DEVICE_COMPLIANCE_CHANGE
    assert down.body["previous_status"] == "compliant"
    assert down.body["current_status"] == "not-compliant"
    assert down.body["event_timestamp"] == int(AT.timestamp())
    up = flip("noncompliant", "compliant")
    assert up is not None and up.body["current_status"] == "compliant"


def test_revocation_and_offboarding() -> None:
    device = signal_for(
        _event(
            "access.revoked", scope="device", user_id="u-1", device_id="d-1", reason="quarantine"
        )
    )
    assert device is not None and device.event_type == CAEP_SESSION_REVOKED
    assert (device.user_id, device.device_id) == ("u-1", "d-1")
    assert device.body["initiating_entity"] == "policy"
    user = signal_for(
        _event("access.revoked", "u-1", scope="user", user_id="u-1", device_id=None, reason="admin")
    )
    assert user is not None and user.device_id is None and user.body["initiating_entity"] == "admin"
    assert signal_for(_event("access.revoked", scope="user")) is None
    for kind in ("directory.account_disabled", "directory.account_deleted", "user.offboarded"):
        off = signal_for(_event(kind, "u-1", user_id="u-1"))
        assert off is not None and off.event_type == RISC_ACCOUNT_DISABLED
        assert not off.complex_subject and off.body == {}
    assert signal_for(_event("posture.reported")) is None


def test_retry_delay_is_exponential_capped_and_jittered() -> None:
    rand = random.Random(7)
    base, cap = timedelta(seconds=1), timedelta(seconds=60)
    for attempt, nominal in ((1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (40, 60)):
        for _ in range(20):
            delay = retry_delay(attempt, base, cap, rand).total_seconds()
            assert nominal / 2 <= delay <= nominal
    assert len({retry_delay(3, base, cap, rand) for _ in range(10)}) > 1
