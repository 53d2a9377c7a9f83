"""The one access evaluator on a real core (SQLite): proof, certificate, state, snapshot,
engine, audit — and its failure paths, each a ``block`` with a reason and one audit record."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mdm_core.access.audit import SqlDecisionAudit
from mdm_core.access.decision import Decision
from mdm_core.access.evaluator import AccessEvaluator
from mdm_core.access.request import AccessRequest
from mdm_core.access.state import SqlAccessState
from mdm_core.access.whatif import what_if, what_if_request
from mdm_core.access.wiring import CheckinSnapshots, evaluator_for
from mdm_core.agent.agent import agent_report
from mdm_core.agent.collector_linux import AGENT_VERSION, LinuxPosture
from mdm_core.domain.device_lifecycle import change_status
from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.decision_cache import DecisionCache
from mdm_core.policy.errors import PolicySetUnavailable
from mdm_core.posture.model import Ownership, Platform
from mdm_core.read_model.evaluator_ports import CachedAccessState, GroupCommitDecisionAudit
from mdm_core.read_model.wiring import read_model_of
from mdm_core.runtime import MdmCore
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.audit import AuditEntry
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.sql.database import Database
from tests.helpers.enrolled import EnrolledDevice, enroll_device, make_core

USER = "u-alice"
AUD = "https://gw.test"


@pytest.fixture
def core(sqlite_database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    built = make_core(sqlite_database, tmp_path)
    built.directory.upsert_user(
        DirectoryUser(
            id=USER, username="alice", active=True, source="local", updated_at=datetime.now(UTC)
        )
    )
    try:
        yield built
    finally:
        built.close()


def _healthy(core: MdmCore) -> EnrolledDevice:
    dev = enroll_device(core, USER, ownership=Ownership.CORPORATE, platform=Platform.LINUX)
    url = core.config.public_url + "/mdm/v1/checkin"
    proven = core.proofs.verify(
        dev.request_proof("POST", url, b"{}"), method="POST", url=url, body=b"{}"
    )
    fmt, report = native_reports("linux", "SER-1", "corporate", DeviceTraits())[0]
    core.checkin.check_in(proven, report, fmt)
    return dev


def _login(dev: EnrolledDevice, *, nonce: str = "n-1", **kw: Any) -> AccessRequest:
    return AccessRequest(
        user_id=USER,
        application="app",
        channel="oidc",
        caller="app",
        device_proof=dev.login_proof(audience=AUD, nonce=nonce, **kw),
        proof_audience=AUD,
        proof_nonce=nonce,
    )


def _audited(core: MdmCore, subject: str) -> list[AuditEntry]:
    with core.storage.unit_of_work() as uow:
        return [e for e in uow.audit.recent(subject) if e.action == "access.decision"]


def _snapshot(at: datetime, *, encrypted: bool = True) -> dict[str, Any]:
    posture = LinuxPosture(
        collected_at=at,
        os_name="debian",
        os_version="12",
        os_build="6.1.0-27-amd64",
        kernel="6.1.0-27-amd64",
        hostname="laptop-7",
        model=None,
        serial_number=None,
        storage_encrypted=encrypted,
        firewall_enabled=None,
        screen_lock_enabled=None,
        screen_lock_timeout_s=None,
        secure_boot=False,
        agent_version=AGENT_VERSION,
    )
    return {"format": "agent", "report": agent_report(posture)}


# ---- the path that grants ------------------------------------------------------------------


def test_a_proven_healthy_device_is_allowed_and_audited_once(core: MdmCore) -> None:
    dev = _healthy(core)
    decision = evaluator_for(core).decide(_login(dev))
    assert decision.outcome in {"allow", "warn"}, decision.reasons
    assert decision.device_id == dev.device_id and not decision.unavailable
    assert decision.evaluated_policy_ids and decision.posture_age_s is not None
    assert decision.device is not None and dev.device_id[:8] in decision.device
    (entry,) = _audited(core, dev.device_id)
    assert entry.outcome == decision.outcome and entry.actor == f"user:{USER}"
    assert entry.detail["channel"] == "oidc" and entry.detail["app"] == "app"
    assert entry.detail["policy_ids"] == list(decision.policy_ids)
    assert "snapshot" not in entry.detail  # the proof carried none


def test_the_device_certificate_proves_the_device(core: MdmCore) -> None:
    dev = _healthy(core)
    request = AccessRequest(
        user_id=USER,
        application="app",
        channel="posture_api",
        caller="proxy",
        client_cert_pem=dev.certificate_pem,
    )
    decision = evaluator_for(core).decide(request)
    assert decision.outcome in {"allow", "warn"} and decision.device_id == dev.device_id


# ---- refusals before the engine ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("proof", "code"),
    [
        ("not-a-jwt", "malformed_proof"),
        ("a.b.c", "malformed_proof"),
    ],
)
def test_a_bad_proof_is_a_block_with_its_reason(core: MdmCore, proof: str, code: str) -> None:
    request = AccessRequest(
        user_id=USER,
        application="app",
        channel="oidc",
        caller="app",
        device_proof=proof,
        proof_audience=AUD,
        proof_nonce="n-1",
    )
    decision = evaluator_for(core).decide(request)
    assert decision.outcome == "block" and decision.reasons[0].code == code
    assert decision.device_id is None and decision.remediation  # tells the user what to do
    (entry,) = _audited(core, f"user:{USER}")
    assert entry.outcome == "block" and entry.detail["reasons"] == [code]


def test_a_proof_for_another_nonce_or_audience_is_refused(core: MdmCore) -> None:
    dev = _healthy(core)
    evaluator = evaluator_for(core)
    wrong_nonce = dataclasses.replace(_login(dev, nonce="n-1"), proof_nonce="n-2")
    assert evaluator.decide(wrong_nonce).reasons[0].code == "nonce_mismatch"
    other_aud = dataclasses.replace(_login(dev), proof_audience="https://elsewhere.test")
    assert evaluator.decide(other_aud).reasons[0].code == "wrong_target"


def test_a_replayed_proof_is_refused(core: MdmCore) -> None:
    dev = _healthy(core)
    evaluator = evaluator_for(core)
    request = _login(dev)
    assert evaluator.decide(request).outcome != "block"
    again = evaluator.decide(request)
    assert again.outcome == "block" and again.reasons[0].code == "replayed_proof"
    assert [e.outcome for e in _audited(core, f"user:{USER}")][0] == "block"


def test_a_proof_without_its_nonce_is_refused(core: MdmCore) -> None:
    dev = _healthy(core)
    request = dataclasses.replace(_login(dev), proof_nonce=None)
    decision = evaluator_for(core).decide(request)
    assert decision.outcome == "block" and decision.reasons[0].code == "device_proof_invalid"


def test_an_api_proof_spends_its_own_nonce_once(core: MdmCore) -> None:
    """The posture API: the proof's nonce claim is spent after the signature holds."""
    dev = _healthy(core)
    live = {"n-api"}

    def spend(nonce: str) -> bool:
        if nonce in live:
            live.discard(nonce)
            return True
        return False

    request = AccessRequest(
        user_id=USER,
        application="app",
        channel="posture_api",
        caller="idp",
        device_proof=dev.login_proof(audience=AUD, nonce="n-api"),
        proof_audience=AUD,
        spend_nonce=spend,
    )
    evaluator = evaluator_for(core)
    assert evaluator.decide(request).outcome != "block" and live == set()
    replay = evaluator.decide(request)
    assert replay.outcome == "block" and replay.reasons[0].code == "nonce_invalid"
    unknown = dataclasses.replace(
        request, device_proof=dev.login_proof(audience=AUD, nonce="never-issued")
    )
    assert evaluator.decide(unknown).reasons[0].code == "nonce_invalid"
    no_audience = dataclasses.replace(request, proof_audience=None)
    assert evaluator.decide(no_audience).reasons[0].code == "nonce_invalid"


def test_a_device_hint_that_disagrees_with_the_proof_is_a_block(core: MdmCore) -> None:
    dev = _healthy(core)
    request = dataclasses.replace(_login(dev), device_id="someone-elses-device")
    decision = evaluator_for(core).decide(request)
    assert decision.outcome == "block" and decision.reasons[0].code == "device_mismatch"
    assert decision.device_id == "someone-elses-device"  # what the caller named, audited


def test_garbage_and_foreign_certificates_are_refused(core: MdmCore) -> None:
    dev = _healthy(core)
    evaluator = evaluator_for(core)
    garbage = AccessRequest(
        user_id=USER,
        application="app",
        channel="oidc",
        caller="app",
        client_cert_pem="-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
    )
    assert evaluator.decide(garbage).reasons[0].code == "malformed_proof"
    core.enrollment.revoke_device(dev.device_id, actor="admin:test", reason="lost")
    revoked = dataclasses.replace(garbage, client_cert_pem=dev.certificate_pem)
    assert evaluator.decide(revoked).reasons[0].code == "revoked_certificate"


# ---- the engine blocks ------------------------------------------------------------------------


def test_no_device_at_all_is_an_unknown_device(core: MdmCore) -> None:
    request = AccessRequest(user_id=USER, application="app", channel="okta_hook", caller="okta")
    decision = evaluator_for(core).decide(request)
    assert decision.outcome == "block" and decision.device_id is None
    assert "device_unknown" in {r.code for r in decision.reasons}
    unknown = dataclasses.replace(request, bound_device_id="no-such-device")
    assert "device_unknown" in {r.code for r in evaluator_for(core).decide(unknown).reasons}


def test_a_quarantined_device_is_blocked_though_its_proof_holds(core: MdmCore) -> None:
    dev = _healthy(core)
    with core.storage.unit_of_work() as uow:
        change_status(
            uow, dev.device_id, DeviceStatus.QUARANTINED, reason="t", at=datetime.now(UTC)
        )
    decision = evaluator_for(core).decide(_login(dev))
    assert decision.outcome == "block" and decision.device_id == dev.device_id
    assert "device_quarantined" in {r.code for r in decision.reasons}


# ---- the posture snapshot ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snapshot", "use"),
    [
        (lambda now: _snapshot(now + timedelta(seconds=5)), "used"),
        (lambda now: _snapshot(now - timedelta(minutes=30)), "stale"),
        (lambda now: {"format": "nope", "report": {}}, "refused"),
        (lambda now: {"storage_encrypted": False}, "refused"),
    ],
    ids=["used", "stale", "unknown-format", "not-an-envelope"],
)
def test_what_became_of_the_snapshot_is_decided_and_audited(
    core: MdmCore, snapshot: Any, use: str
) -> None:
    dev = _healthy(core)
    decision = evaluator_for(core).decide(_login(dev, posture=snapshot(datetime.now(UTC))))
    assert decision.snapshot == use
    (entry,) = _audited(core, dev.device_id)
    assert entry.detail["snapshot"] == use
    if use != "used":  # the stored (healthy) posture decides
        assert decision.outcome in {"allow", "warn"}


def test_a_used_snapshot_that_is_worse_decides(core: MdmCore) -> None:
    dev = _healthy(core)
    bad = _snapshot(datetime.now(UTC) + timedelta(seconds=5), encrypted=False)
    decision = evaluator_for(core).decide(_login(dev, posture=bad))
    assert decision.snapshot == "used" and decision.outcome != "allow"


def test_a_snapshot_older_than_the_stored_report_is_not_used(core: MdmCore) -> None:
    dev = _healthy(core)
    with core.storage.unit_of_work() as uow:
        stored = uow.posture.latest(dev.device_id)
    assert stored is not None
    old = _snapshot(stored.posture.collected_at - timedelta(seconds=30), encrypted=False)
    decision = evaluator_for(core).decide(_login(dev, posture=old))
    assert decision.snapshot == "older" and decision.outcome in {"allow", "warn"}


# ---- fail closed -------------------------------------------------------------------------------


class _BrokenAudit:
    def record(self, request: AccessRequest, decision: Decision) -> None:
        raise RuntimeError("audit log unavailable")


class _NoPolicies:
    def current(self) -> CompiledPolicySet:
        raise PolicySetUnavailable("no valid policy set")


def _evaluator(core: MdmCore, **overrides: Any) -> AccessEvaluator:
    parts: dict[str, Any] = {
        "state": SqlAccessState(core.storage),
        "proofs": core.proofs,
        "certificates": core.ca,
        "snapshots": CheckinSnapshots(core.checkin, core.privacy),
        "policies": core.policies,
        "audit": SqlDecisionAudit(core.storage),
    }
    parts.update(overrides)
    return AccessEvaluator(**parts)


def test_no_audit_no_access(core: MdmCore) -> None:
    dev = _healthy(core)
    decision = _evaluator(core, audit=_BrokenAudit()).decide(_login(dev))
    assert decision.outcome == "block" and decision.unavailable
    assert decision.reasons[0].code == "decision_unavailable"
    assert _audited(core, dev.device_id) == []


def test_no_policy_set_is_a_block_that_says_unavailable(core: MdmCore) -> None:
    dev = _healthy(core)
    decision = _evaluator(core, policies=_NoPolicies()).decide(_login(dev))
    assert decision.outcome == "block" and decision.unavailable
    (entry,) = _audited(core, dev.device_id)  # the block itself is recorded
    assert entry.detail["reasons"] == ["decision_unavailable"]


def test_every_dependency_is_required(core: MdmCore) -> None:
    with pytest.raises(ValueError, match="audit"):
        _evaluator(core, audit=None)


# ---- what-if is the live path ----------------------------------------------------------------


def test_what_if_and_a_live_login_reach_the_same_decision(core: MdmCore) -> None:
    """Same user, device, app and time: the login (proof) and the what-if (the device named
    by an admin) run the same steps, so their decisions are equal; only the login is audited."""
    dev = _healthy(core)
    evaluator = evaluator_for(core)
    at = datetime.now(UTC) + timedelta(seconds=1)
    live = evaluator.decide(dataclasses.replace(_login(dev), requested_at=at))
    explained = evaluator.explain(
        what_if_request(user_id=USER, device_id=dev.device_id, app="app", now=at)
    )
    assert explained.decision == live
    assert len(_audited(core, dev.device_id)) == 1  # what-if recorded nothing
    # And for a device that must be blocked.
    with core.storage.unit_of_work() as uow:
        change_status(uow, dev.device_id, DeviceStatus.QUARANTINED, reason="t", at=at)
    live = evaluator.decide(dataclasses.replace(_login(dev, nonce="n-2"), requested_at=at))
    explained = evaluator.explain(
        what_if_request(user_id=USER, device_id=dev.device_id, app="app", now=at)
    )
    assert live.outcome == "block" and explained.decision == live


def test_what_if_explains_the_input_without_writing(core: MdmCore) -> None:
    dev = _healthy(core)
    result = what_if(evaluator_for(core), user_id=USER, device_id=dev.device_id, app="app")
    assert result["input"]["device"]["id"] == dev.device_id
    assert result["input"]["user"]["known"] is True and result["input"]["posture"] is not None
    assert result["decision"]["outcome"] in {"allow", "warn"}
    assert result["input"]["policy_set"] == core.policies.current().fingerprint
    assert _audited(core, dev.device_id) == [] and _audited(core, f"user:{USER}") == []


# ---- the seams ----------------------------------------------------------------------------------


class _CountingState:
    """An :class:`AccessStateReader` of our own (as a cached read model would be)."""

    def __init__(self, inner: SqlAccessState) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def device(self, device_id: str) -> Any:
        self.calls.append("device")
        return self.inner.device(device_id)

    def access_state(self, user_id: str, device: Any) -> Any:
        self.calls.append("access_state")
        return self.inner.access_state(user_id, device)


def test_the_state_is_read_through_the_injected_reader_once(core: MdmCore) -> None:
    dev = _healthy(core)
    reader = _CountingState(SqlAccessState(core.storage))
    evaluator = evaluator_for(core, state=reader)
    evaluator.decide(_login(dev))
    assert reader.calls == ["access_state"]  # the proof named the device
    reader.calls.clear()
    evaluator.explain(what_if_request(user_id=USER, device_id=dev.device_id, app=None))
    assert reader.calls == ["device", "access_state"]


def test_a_decision_survives_its_json(core: MdmCore) -> None:
    dev = _healthy(core)
    decision = evaluator_for(core).decide(
        _login(dev, posture=_snapshot(datetime.now(UTC) + timedelta(seconds=5)))
    )
    assert Decision.from_json(decision.to_json()) == decision
    with pytest.raises(ValueError, match="outcome"):
        Decision(outcome="maybe")  # type: ignore[arg-type]


# ---- as wired in production: read model, group-commit audit, decision cache ------------------


def test_the_production_wiring_caches_repeats_and_still_sees_every_change(core: MdmCore) -> None:
    """The evaluator the gateway builds (read model + group-commit audit + decision cache)
    answers a repeat from the cache, records every decision durably before it returns, and
    blocks the moment the device is quarantined: a cached allow is never served for it."""
    model = read_model_of(core)
    cache = DecisionCache()
    access = evaluator_for(
        core,
        state=CachedAccessState(model.reads),
        audit=GroupCommitDecisionAudit(model.audit),
        cache=cache,
    )
    dev = _healthy(core)
    first = access.decide(_login(dev, nonce="n-1"))
    second = access.decide(_login(dev, nonce="n-2"))
    assert first.outcome in {"allow", "warn"}, first.reasons
    assert second.outcome == first.outcome and second.policy_ids == first.policy_ids
    assert cache.stats().hits >= 1  # the repeat was not re-evaluated
    assert len(_audited(core, dev.device_id)) == 2  # both durable on return
    with core.storage.unit_of_work() as uow:
        change_status(
            uow, dev.device_id, DeviceStatus.QUARANTINED, reason="t", at=datetime.now(UTC)
        )
    third = access.decide(_login(dev, nonce="n-3"))
    assert third.outcome == "block"
    assert "device_quarantined" in {r.code for r in third.reasons}
    assert [e.outcome for e in _audited(core, dev.device_id)].count("block") == 1


def test_a_group_commit_audit_that_fails_is_a_block(core: MdmCore) -> None:
    class DownWriter:
        def record(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("audit log unavailable")

    dev = _healthy(core)
    access = evaluator_for(
        core,
        state=CachedAccessState(read_model_of(core).reads),
        audit=GroupCommitDecisionAudit(DownWriter()),
        cache=DecisionCache(),
    )
    decision = access.decide(_login(dev))
    assert decision.outcome == "block" and decision.unavailable
    assert _audited(core, dev.device_id) == []
