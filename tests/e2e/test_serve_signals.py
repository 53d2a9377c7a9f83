"""The Shared Signals transmitter end to end: a real ``posture serve`` (default flags), a real
device's degrading check-in, and an independent receiver (Node, jose 6) that registered its
stream through the management API and verifies every SET against our published JWKS.

- push: the receiver answers 503 first; the SET is retried and delivered, verified,
  ``device-compliance-change`` compliant -> not-compliant about the user (email) and the device;
  then a ``session-revoked`` written to the outbox as the sessions code will, and a
  verification event the receiver asked for;
- crash: the server is SIGKILLed while its push is in flight (the receiver never answers the
  first request) after the check-in was answered; after a restart the SET is delivered;
- poll: the receiver polls, verifies, acknowledges; the acknowledged SET is not handed out again;
- Okta: a receiver double following Okta's published receiver contract (SSF Security Event
  Tokens API: ``POST /security/api/v1/security-events``, ``application/secevent+jwt``, ``202``,
  errors as ``{"err", "description"}``); it creates no stream (Okta does not: its admin
  registers our issuer and JWKS / well-known URL as a Security Events Provider), the stream is
  configured in ``signals.receivers`` with ``push_endpoint``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mdm_core.bus.events import DomainEvent
from mdm_core.simulator.reports import DeviceTraits
from tests.e2e.ssf_stack import AUDIENCE, stack
from tests.services import free_port

DCC = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"
REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
VERIFY = "https://schemas.openid.net/secevent/ssf/event-type/verification"


def _degraded(message: dict[str, Any]) -> bool:
    """A received device-compliance-change to not-compliant (the healthy check-in's own
    flips, e.g. to compliant once every report of the round arrived, come before it)."""
    event = (message.get("set") or {}).get("events", {}).get(DCC)
    return bool(event) and event["current_status"] == "not-compliant"


def test_push_retried_after_503_and_verified_by_an_independent_receiver(tmp_path: Path) -> None:
    with stack(tmp_path) as st:
        rx = st.receiver(FAIL_FIRST="1", AUTH_HEADER="Bearer node-rx-inbound-secret")
        try:
            dev = st.device()
            st.check_in(dev, DeviceTraits())  # compliant
            st.check_in(dev, DeviceTraits(jailbroken=True))  # degrades: quarantined
            rx.next(lambda m: m.get("unavailable") is True)  # the first push got 503
            got = rx.next(_degraded)
            claims, header = got["set"], got["header"]
            assert header["typ"] == "secevent+jwt" and header["alg"] == "RS256" and header["kid"]
            assert claims["iss"] == st.url and claims["aud"] == AUDIENCE
            assert "sub" not in claims and "exp" not in claims
            assert claims["sub_id"] == {
                "format": "complex",
                "user": {"format": "email", "email": "alice@example.com"},
                "device": {"format": "opaque", "id": dev.device_id},
            }
            event = claims["events"][DCC]
            assert event["previous_status"] == "compliant"
            assert event["current_status"] == "not-compliant"
            assert event["initiating_entity"] == "policy"
            assert not got["duplicate"]

            st.add_events(
                DomainEvent(
                    type="access.revoked",
                    subject=dev.device_id,
                    payload={
                        "scope": "device",
                        "user_id": "u-alice",
                        "device_id": dev.device_id,
                        "reason": "quarantine",
                        "count": 2,
                        "sessions": 1,
                    },
                )
            )
            revoked = rx.next_set(REVOKED)["set"]
            assert revoked["sub_id"]["device"] == {"format": "opaque", "id": dev.device_id}

            assert rx.send(cmd="verify", state="state-1")["status"] == 204
            verification = rx.next_set(VERIFY)["set"]
            assert verification["events"][VERIFY] == {"state": "state-1"}
            assert verification["sub_id"] == {"format": "opaque", "id": rx.stream_id}
            assert not [m for m in rx.seen if "refused" in m]
        finally:
            rx.close()


def test_a_set_survives_a_crash_between_the_check_in_and_the_push(tmp_path: Path) -> None:
    with stack(tmp_path) as st:
        rx = st.receiver(HANG_FIRST="1")
        try:
            dev = st.device()
            st.check_in(dev, DeviceTraits())
            st.check_in(dev, DeviceTraits(encryption_off=True))  # answered: committed
            rx.next(lambda m: m.get("hung") is True)  # the push is in flight, unanswered
            st.kill_server()  # SIGKILL, every worker
            st.start_server()
            got = rx.next(_degraded, timeout=60)  # the lease expired; the restarted server sends
            assert got["set"]["events"][DCC]["previous_status"] == "compliant"
        finally:
            rx.close()


def test_poll_delivery_with_acknowledgement(tmp_path: Path) -> None:
    with stack(tmp_path) as st:
        rx = st.receiver(MODE="poll")
        try:
            dev = st.device()
            st.check_in(dev, DeviceTraits())
            st.check_in(dev, DeviceTraits(jailbroken=True))
            first = rx.send(cmd="poll", maxEvents=10)
            assert first["status"] == 200, first
            sets = [s for s in first["sets"] if _degraded({"set": s})]
            assert len(sets) == 1 and sets[0]["sub_id"]["device"]["id"] == dev.device_id
            again = rx.send(cmd="poll", returnImmediately=True)  # not acknowledged: again
            assert [s["jti"] for s in again["sets"]] == [s["jti"] for s in first["sets"]]
            acked = rx.send(
                cmd="poll", ack=[s["jti"] for s in first["sets"]], returnImmediately=True
            )
            assert acked["status"] == 200 and acked["sets"] == []
            assert acked["moreAvailable"] is False
        finally:
            rx.close()


def test_okta_style_receiver_configured_by_push_endpoint(tmp_path: Path) -> None:
    port = free_port()
    org = f"http://127.0.0.1:{port}"  # "https://{yourOktaDomain}" in production
    okta = {
        "client_id": "okta",
        "audience": org,
        "push_endpoint": org + "/security/api/v1/security-events",
    }
    with stack(tmp_path, [okta]) as st:
        rx = st.receiver(
            NO_REGISTER="1",
            CLIENT_ID="okta",
            CLIENT_SECRET="",
            AUDIENCE=org,
            STATIC_PORT=str(port),
            PUSH_PATH="/security/api/v1/security-events",
        )
        try:
            dev = st.device()
            st.check_in(dev, DeviceTraits())
            st.check_in(dev, DeviceTraits(jailbroken=True))
            got = rx.next(_degraded)
            assert got["set"]["aud"] == org and got["status"] == 202
            assert got["set"]["sub_id"]["user"] == {"format": "email", "email": "alice@example.com"}
        finally:
            rx.close()
