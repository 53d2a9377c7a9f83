"""The zero-tolerance engine, rule by rule of DESIGN.md section 3."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.engine import evaluate
from mdm_core.policy.model import Outcome, ReasonCode
from mdm_core.posture.model import InstalledApp, Ownership, Platform

from .factories import NOW, SIMPLE, device, healthy_posture, policy_set, request, user


@pytest.fixture
def simple(tmp_path: Path) -> CompiledPolicySet:
    return policy_set(tmp_path, {"p.yaml": SIMPLE})


def codes(decision) -> list[str]:
    return [r.code.value for r in decision.reasons]


def test_healthy_device_is_allowed(simple: CompiledPolicySet) -> None:
    d = evaluate(request(), simple)
    assert d.outcome is Outcome.ALLOW
    assert d.reasons == ()
    assert d.quarantine is False
    assert d.evaluated_policy_ids == ("base",)
    assert d.posture_age == timedelta(minutes=5)
    assert d.failing_rules == frozenset()
    assert d.to_json()["outcome"] == "allow"


@pytest.mark.parametrize(
    "field,value",
    [
        ("jailbroken", True),
        ("storage_encrypted", False),
    ],
)
def test_critical_failure_blocks_and_quarantines_without_grace(
    simple: CompiledPolicySet, field: str, value: object
) -> None:
    posture = healthy_posture(**{field: value})
    # even with a long-standing first failure there is no grace for critical rules
    failures = {("base", "no-jailbreak"): NOW - timedelta(days=30)}
    d = evaluate(request(posture=posture, rule_failures=failures), simple)
    assert d.outcome is Outcome.BLOCK
    assert d.quarantine is True
    assert d.reasons[0].code is ReasonCode.RULE_FAILED
    assert d.reasons[0].severity is not None and d.reasons[0].severity.value == "critical"
    assert d.reasons[0].remediation
    assert d.policy_ids == ("base",)


@pytest.mark.parametrize("field", ["jailbroken", "storage_encrypted"])
def test_unreported_critical_field_blocks_without_quarantine(
    simple: CompiledPolicySet, field: str
) -> None:
    """No evidence, no quarantine: a critical field the device did not report blocks (fail
    closed, no grace) but does not quarantine, so the next complete report restores access."""
    d = evaluate(request(posture=healthy_posture(**{field: None})), simple)
    assert d.outcome is Outcome.BLOCK
    assert d.quarantine is False
    assert d.reasons[0].code is ReasonCode.RULE_FAILED
    assert d.reasons[0].severity is not None and d.reasons[0].severity.value == "critical"
    # the user is told the value is missing, not that the device is jailbroken/unencrypted
    assert d.reasons[0].message.endswith(f"This device did not report: {field.replace('_', ' ')}.")


def test_a_reported_failure_does_not_claim_a_missing_field(simple: CompiledPolicySet) -> None:
    d = evaluate(request(posture=healthy_posture(storage_encrypted=False)), simple)
    assert d.outcome is Outcome.BLOCK
    assert "did not report" not in d.reasons[0].message


def test_grace_timeline_counts_from_first_failure(simple: CompiledPolicySet) -> None:
    old = healthy_posture(os_version="17.1")
    key = ("base", "os")
    fresh = evaluate(request(posture=old), simple)
    assert fresh.outcome is Outcome.WARN
    assert fresh.failing_rules == {key}
    assert fresh.reasons[0].first_failed_at == NOW
    assert fresh.reasons[0].escalates_at == NOW + timedelta(days=3)
    day4 = evaluate(request(posture=old, rule_failures={key: NOW - timedelta(days=4)}), simple)
    assert day4.outcome is Outcome.RESTRICT
    assert day4.reasons[0].escalates_at == NOW - timedelta(days=4) + timedelta(days=7)
    day8 = evaluate(request(posture=old, rule_failures={key: NOW - timedelta(days=8)}), simple)
    assert day8.outcome is Outcome.BLOCK
    assert day8.quarantine is False
    assert day8.reasons[0].escalates_at is None


def test_non_critical_rule_without_grace_blocks_at_once(simple: CompiledPolicySet) -> None:
    d = evaluate(request(posture=healthy_posture(passcode_min_length=4)), simple)
    assert d.outcome is Outcome.BLOCK
    assert d.quarantine is False


def test_passing_again_restores_access(simple: CompiledPolicySet) -> None:
    failures = {("base", "os"): NOW - timedelta(days=10)}
    d = evaluate(request(rule_failures=failures), simple)
    assert d.outcome is Outcome.ALLOW


@pytest.mark.parametrize("age", [timedelta(hours=1, seconds=1), timedelta(days=30)])
def test_stale_posture_is_failed_posture(simple: CompiledPolicySet, age: timedelta) -> None:
    d = evaluate(request(posture_age=age), simple)
    assert d.outcome is Outcome.BLOCK
    assert ReasonCode.POSTURE_STALE.value in codes(d)
    assert d.quarantine is False


def test_posture_exactly_at_the_limit_is_fresh(simple: CompiledPolicySet) -> None:
    assert evaluate(request(posture_age=timedelta(hours=1)), simple).outcome is Outcome.ALLOW


def test_age_from_collected_at_when_not_given(simple: CompiledPolicySet) -> None:
    posture = healthy_posture(collected_at=NOW - timedelta(hours=2))
    d = evaluate(request(posture=posture, posture_age=None), simple)
    assert d.outcome is Outcome.BLOCK and d.posture_age == timedelta(hours=2)


def test_posture_from_the_future_is_not_trusted(simple: CompiledPolicySet) -> None:
    posture = healthy_posture(collected_at=NOW + timedelta(days=1))
    d = evaluate(request(posture=posture, posture_age=None), simple)
    assert d.outcome is Outcome.BLOCK
    assert ReasonCode.POSTURE_STALE.value in codes(d)


def test_missing_posture_blocks(simple: CompiledPolicySet) -> None:
    d = evaluate(request(posture=None), simple)
    assert d.outcome is Outcome.BLOCK and codes(d) == ["posture_missing"]


@pytest.mark.parametrize(
    "over,code",
    [
        ({"device": None}, "device_unknown"),
        ({"device": device(user_id="mallory")}, "device_not_owned"),
        ({"device": device(status=DeviceStatus.RETIRED)}, "device_retired"),
        ({"device": device(status=DeviceStatus.WIPED)}, "device_wiped"),
        ({"device": device(status=DeviceStatus.QUARANTINED)}, "device_quarantined"),
        (
            {"device": device(status=DeviceStatus.PENDING_VERIFICATION)},
            "device_pending_verification",
        ),
        ({"user": user(active=False)}, "user_inactive"),
        ({"user": None}, "user_unknown"),
    ],
)
def test_identity_gates_block(simple: CompiledPolicySet, over: dict, code: str) -> None:
    d = evaluate(request(**over), simple)
    assert d.outcome is Outcome.BLOCK
    assert code in codes(d)


def test_quarantined_device_stays_blocked_even_when_healthy(simple: CompiledPolicySet) -> None:
    d = evaluate(request(device=device(status=DeviceStatus.QUARANTINED)), simple)
    assert d.outcome is Outcome.BLOCK and d.quarantine is True


def test_no_compliance_policy_means_not_compliant(tmp_path: Path) -> None:
    ps = policy_set(
        tmp_path,
        {
            "p.yaml": """
            kind: CompliancePolicy
            id: finance-only
            assign: {groups: [finance]}
            rules:
              - {id: enc, severity: critical, storage_encrypted: required, remediation: x}
            """
        },
    )
    d = evaluate(request(user=user(groups=("staff",))), ps)
    assert d.outcome is Outcome.BLOCK and codes(d) == ["no_compliance_policy"]
    assert evaluate(request(user=user(groups=("finance",))), ps).outcome is Outcome.ALLOW
    assert evaluate(request(), CompiledPolicySet.empty(NOW)).outcome is Outcome.BLOCK


def test_assignment_by_platform_and_ownership(tmp_path: Path) -> None:
    ps = policy_set(
        tmp_path,
        {
            "p.yaml": """
            kind: CompliancePolicy
            id: byod-android
            assign: {platforms: [android], ownership: [byod]}
            rules:
              - {id: wp, severity: high, work_profile_present: required, remediation: x}
            """
        },
    )
    android_byod = device(platform=Platform.ANDROID, ownership=Ownership.BYOD)
    posture = healthy_posture(Platform.ANDROID, work_profile_present=False)
    d = evaluate(request(device=android_byod, posture=posture), ps)
    assert d.outcome is Outcome.BLOCK and d.failing_rules == {("byod-android", "wp")}
    # an iOS device has no applicable policy at all -> not compliant
    assert codes(evaluate(request(), ps)) == ["no_compliance_policy"]


def test_posture_platform_must_match_the_device(simple: CompiledPolicySet) -> None:
    d = evaluate(request(posture=healthy_posture(Platform.ANDROID)), simple)
    assert d.outcome is Outcome.BLOCK


REPORT_ONLY = """
kind: CompliancePolicy
id: next
mode: report-only
assign: {}
max_posture_age: 1m
rules:
  - {id: jb, severity: critical, not_jailbroken: true, remediation: x}
  - id: new-os
    severity: high
    min_os_version: {ios: "99"}
    grace: {warn: 0d}
    remediation: y
"""


def test_report_only_findings_are_never_enforced(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"p.yaml": SIMPLE, "r.yaml": REPORT_ONLY})
    d = evaluate(request(), ps)
    assert d.outcome is Outcome.ALLOW
    assert {r.rule_id for r in d.report_only} == {"new-os", None}
    assert {r.code.value for r in d.report_only} == {"rule_failed", "posture_stale"}
    assert d.evaluated_policy_ids == ("base", "next")
    assert d.policy_ids == ()


def test_report_only_alone_is_not_a_compliance_policy(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"r.yaml": REPORT_ONLY})
    d = evaluate(request(posture=healthy_posture(jailbroken=True)), ps)
    assert d.outcome is Outcome.BLOCK
    assert codes(d) == ["no_compliance_policy"]
    assert d.quarantine is False  # a report-only critical finding never quarantines


APPS = """
kind: AccessPolicy
id: low
applications: [{client_id: wiki}]
sensitivity: low
outcomes: {warn: allow, restrict: {scopes: [openid, profile]}}
---
kind: AccessPolicy
id: crit
applications: [{entity_id: "https://erp.example.com/saml"}]
sensitivity: critical
"""


def test_access_policy_decides_warn_and_restrict_per_app(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"p.yaml": SIMPLE, "a.yaml": APPS})
    old = healthy_posture(os_version="17.1")
    restricted = {("base", "os"): NOW - timedelta(days=4)}
    d = evaluate(request(posture=old, rule_failures=restricted, app="wiki"), ps)
    assert d.outcome is Outcome.RESTRICT
    assert d.restrictions.allowed_scopes == ("openid", "profile")
    d = evaluate(request(posture=old, app="https://erp.example.com/saml"), ps)
    assert d.outcome is Outcome.BLOCK  # critical app denies even warn
    assert "app_denies_outcome" in codes(d)
    # unlisted app: warn allowed, restrict denied
    assert evaluate(request(posture=old, app="unlisted"), ps).outcome is Outcome.WARN
    d = evaluate(request(posture=old, rule_failures=restricted, app="unlisted"), ps)
    assert d.outcome is Outcome.BLOCK
    # a healthy device is allowed everywhere
    assert evaluate(request(app="https://erp.example.com/saml"), ps).outcome is Outcome.ALLOW


CEL_POLICY = """
kind: CompliancePolicy
id: custom
assign: {}
rules:
  - id: lock
    severity: low
    cel: posture.screen_lock_timeout_s <= 300 && "staff" in user.groups
    grace: {warn: 0d}
    remediation: Lock sooner.
  - id: no-teamviewer
    severity: high
    forbidden_apps: [com.teamviewer]
    remediation: Remove it.
"""


def test_cel_rule_and_null_field_fail_closed(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"c.yaml": CEL_POLICY})
    assert evaluate(request(), ps).outcome is Outcome.ALLOW
    d = evaluate(request(posture=healthy_posture(screen_lock_timeout_s=900)), ps)
    assert d.outcome is Outcome.WARN
    d = evaluate(request(posture=healthy_posture(screen_lock_timeout_s=None)), ps)
    assert d.outcome is Outcome.WARN  # null <= 300 errs -> the rule fails
    assert "could not be evaluated" in d.reasons[0].message
    apps = (InstalledApp(app_id="com.teamviewer"),)
    assert evaluate(request(posture=healthy_posture(installed_apps=apps)), ps).outcome is (
        Outcome.BLOCK
    )


def test_an_exception_inside_evaluation_blocks(simple: CompiledPolicySet) -> None:
    broken = {("base", "os"): "not a datetime"}  # a corrupted grace record
    d = evaluate(request(posture=healthy_posture(os_version="1"), rule_failures=broken), simple)
    assert d.outcome is Outcome.BLOCK
    assert codes(d) == ["evaluation_error"]


def test_decision_is_json_serialisable(simple: CompiledPolicySet) -> None:
    import json

    d = evaluate(request(posture=healthy_posture(os_version="17.1"), app="x"), simple)
    text = json.dumps(d.to_json())
    assert '"rule_failed"' in text and '"escalates_at"' in text


def test_shipped_default_set_allows_a_healthy_device_and_blocks_a_jailbroken_one() -> None:
    from mdm_core.policy.loader import load_policy_directory

    from .factories import REPO_POLICIES

    ps = load_policy_directory(REPO_POLICIES, now=NOW)
    assert evaluate(request(), ps).outcome is Outcome.ALLOW
    for platform in (Platform.MACOS, Platform.WINDOWS, Platform.ANDROID, Platform.LINUX):
        d = evaluate(
            request(device=device(platform=platform), posture=healthy_posture(platform)), ps
        )
        assert d.outcome is Outcome.ALLOW, (platform, d.reasons)
    d = evaluate(request(posture=healthy_posture(jailbroken=True)), ps)
    assert d.outcome is Outcome.BLOCK and d.quarantine
    d = evaluate(request(posture=healthy_posture(os_build="21A329")), ps)
    assert d.outcome is Outcome.BLOCK and d.quarantine
    d = evaluate(request(posture=healthy_posture(mdm_profile_present=False)), ps)
    assert d.quarantine
