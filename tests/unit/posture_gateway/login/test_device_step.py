"""The device-check step every login front end shares: nonce binding, single use, and a gate
that fails or misbehaves is a block (the gate is never asked with a wrong or spent nonce)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from posture_gateway.access.nonces import InProcessNonceStore, NonceKind
from posture_gateway.login.device_check import LoginVerdict
from posture_gateway.login.device_step import (
    AGENT_TIMEOUT_MS,
    agent_config,
    agent_origin,
    begin_device_check,
    finish_device_check,
)

AUD = "https://gw.example"


class RecordingGate:
    def __init__(self, verdict: LoginVerdict | None = None, error: Exception | None = None):
        self.verdict = verdict or LoginVerdict(outcome="allow", claims={"device_id": "d1"})
        self.error = error
        self.calls: list[dict[str, object]] = []

    def check(self, **kwargs: object) -> LoginVerdict:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return self.verdict


class DownStore(InProcessNonceStore):
    def consume(self, nonce: str, *, purpose: str) -> bool:
        raise ConnectionError("nonce store down")


def _finish(gate: RecordingGate, nonces: InProcessNonceStore, expected: object, presented: str):
    return finish_device_check(
        gate,
        nonces,
        kind=NonceKind.LOGIN_DEVICE,
        audience=AUD,
        expected_nonce=expected,
        presented_nonce=presented,
        user_id="u1",
        client_id="app",
        requested_scopes=frozenset({"openid"}),
        proof="proof.jwt",
        client_cert_pem=None,
    )


def _begin(nonces: InProcessNonceStore) -> str:
    return begin_device_check(
        nonces, timedelta(minutes=1), kind=NonceKind.LOGIN_DEVICE, audience=AUD
    )


def test_the_gate_decides_with_the_transactions_nonce_once() -> None:
    nonces, gate = InProcessNonceStore(), RecordingGate()
    nonce = _begin(nonces)
    outcome = _finish(gate, nonces, nonce, nonce)
    assert outcome.nonce_problem is None and outcome.verdict.outcome == "allow"
    assert gate.calls == [
        {
            "user_id": "u1",
            "client_id": "app",
            "requested_scopes": frozenset({"openid"}),
            "proof": "proof.jwt",
            "nonce": nonce,
            "client_cert_pem": None,
        }
    ]
    replay = _finish(gate, nonces, nonce, nonce)
    assert replay.nonce_problem == "nonce_replayed" and replay.verdict.outcome == "block"
    assert len(gate.calls) == 1  # the replay never reached the gate


@pytest.mark.parametrize("expected", [None, "", 42, "another-nonce"])
def test_a_nonce_that_is_not_the_transactions_is_refused(expected: object) -> None:
    nonces, gate = InProcessNonceStore(), RecordingGate()
    nonce = _begin(nonces)
    outcome = _finish(gate, nonces, expected, nonce)
    assert outcome.nonce_problem == "nonce_mismatch"
    assert outcome.verdict.outcome == "block" and gate.calls == []
    assert _finish(gate, nonces, nonce, nonce).verdict.outcome == "allow"  # still unspent


def test_a_nonce_of_another_step_or_audience_is_not_spendable() -> None:
    nonces, gate = InProcessNonceStore(), RecordingGate()
    entra = begin_device_check(
        nonces, timedelta(minutes=1), kind=NonceKind.ENTRA_DEVICE, audience=AUD
    )
    assert _finish(gate, nonces, entra, entra).nonce_problem == "nonce_replayed"
    other = begin_device_check(
        nonces, timedelta(minutes=1), kind=NonceKind.LOGIN_DEVICE, audience="https://other"
    )
    assert _finish(gate, nonces, other, other).nonce_problem == "nonce_replayed"
    assert gate.calls == []


def test_a_failing_nonce_store_is_a_block() -> None:
    nonces, gate = DownStore(), RecordingGate()
    nonce = _begin(nonces)
    outcome = _finish(gate, nonces, nonce, nonce)
    assert outcome.verdict.outcome == "block" and gate.calls == []


def test_a_failing_gate_is_a_block() -> None:
    nonces, gate = InProcessNonceStore(), RecordingGate(error=RuntimeError("posture store down"))
    nonce = _begin(nonces)
    outcome = _finish(gate, nonces, nonce, nonce)
    assert outcome.nonce_problem is None
    assert outcome.verdict.outcome == "block"
    assert [r.code for r in outcome.verdict.reasons] == ["device_check_failed"]


@pytest.mark.parametrize("claims", [{"sub": "someone-else"}, {"iss": "x"}, {"x": object()}])
def test_a_verdict_no_token_can_carry_is_a_block(claims: dict[str, object]) -> None:
    nonces = InProcessNonceStore()
    gate = RecordingGate(LoginVerdict(outcome="allow", claims=claims))
    nonce = _begin(nonces)
    verdict = _finish(gate, nonces, nonce, nonce).verdict
    assert verdict.outcome == "block"
    assert [r.code for r in verdict.reasons] == ["device_check_failed"]


def test_the_agent_probe_config() -> None:
    assert agent_origin(7999) == "http://127.0.0.1:7999"
    assert agent_config(port=7999, nonce="n", audience=AUD) == {
        "port": 7999,
        "nonce": "n",
        "aud": AUD,
        "timeout_ms": AGENT_TIMEOUT_MS,
    }
