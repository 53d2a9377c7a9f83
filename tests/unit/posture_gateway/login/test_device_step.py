"""The device-check step every login front end shares: nonce binding, single use, and an
evaluator that fails is a block (it is never asked with a wrong or spent nonce)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mdm_core.access.decision import Decision, block
from mdm_core.access.request import AccessRequest
from posture_gateway.access.nonces import InProcessNonceStore, NonceKind
from posture_gateway.login.device_step import (
    AGENT_TIMEOUT_MS,
    agent_config,
    agent_origin,
    begin_device_check,
    finish_device_check,
)

AUD = "https://gw.example"
_NOW = datetime(2026, 12, 1, tzinfo=UTC)


class RecordingGate:
    """An AccessDecisions that records what it was asked."""

    def __init__(self, verdict: Decision | None = None, error: Exception | None = None):
        self.verdict = verdict or Decision(
            outcome="allow", reasons=(), policy_ids=(), evaluated_at=_NOW, device_id="d1"
        )
        self.error = error
        self.calls: list[AccessRequest] = []

    def decide(self, request: AccessRequest) -> Decision:
        self.calls.append(request)
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
        channel="oidc",
        audience=AUD,
        expected_nonce=expected,
        presented_nonce=presented,
        user_id="u1",
        client_id="app",
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
    [asked] = gate.calls
    assert (asked.user_id, asked.application, asked.channel, asked.caller) == (
        "u1",
        "app",
        "oidc",
        "app",
    )
    assert (asked.device_proof, asked.proof_audience, asked.proof_nonce) == (
        "proof.jwt",
        AUD,
        nonce,
    )
    assert asked.client_cert_pem is None
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


def test_no_evaluator_is_a_block() -> None:
    nonces = InProcessNonceStore()
    nonce = _begin(nonces)
    outcome = finish_device_check(
        None,
        nonces,
        kind=NonceKind.LOGIN_DEVICE,
        channel="oidc",
        audience=AUD,
        expected_nonce=nonce,
        presented_nonce=nonce,
        user_id="u1",
        client_id="app",
        proof="proof.jwt",
        client_cert_pem=None,
    )
    assert outcome.verdict.outcome == "block"
    assert [r.code for r in outcome.verdict.reasons] == ["device_gate_not_configured"]


def test_a_block_from_the_evaluator_is_passed_through() -> None:
    nonces = InProcessNonceStore()
    gate = RecordingGate(block("device_quarantined", "This device is quarantined."))
    nonce = _begin(nonces)
    verdict = _finish(gate, nonces, nonce, nonce).verdict
    assert verdict.outcome == "block"
    assert [r.code for r in verdict.reasons] == ["device_quarantined"]


def test_the_agent_probe_config() -> None:
    assert agent_origin(7999) == "http://127.0.0.1:7999"
    assert agent_config(port=7999, nonce="n", audience=AUD) == {
        "port": 7999,
        "nonce": "n",
        "aud": AUD,
        "timeout_ms": AGENT_TIMEOUT_MS,
    }
