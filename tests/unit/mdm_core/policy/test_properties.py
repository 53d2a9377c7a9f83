"""Invariants of the engine, checked on generated inputs (hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.engine import evaluate
from mdm_core.policy.loader import load_policy_directory
from mdm_core.policy.model import EvaluationInput, Outcome, Severity
from mdm_core.posture.model import InstalledApp, ManagedApp, Ownership, Platform, Posture

from .factories import NOW, REPO_POLICIES, SIMPLE, device, user, write

DEFAULT_SET = load_policy_directory(REPO_POLICIES, now=NOW)
APPS = [None, "intranet-web", "crm-web", "payroll-web", "https://erp.example.com/saml", "other"]

tri = st.sampled_from([True, False, None])
platforms = st.sampled_from(list(Platform))
postures_fields = st.fixed_dictionaries(
    {
        "os_version": st.sampled_from(
            [None, "1", "13", "14", "17.1", "17.4", "18.3", "10.0.22631", "15.3"]
        ),
        "os_build": st.sampled_from([None, "21A329", "22D63", "24D60", "19045.2006", "x"]),
        "security_patch_level": st.one_of(st.none(), st.dates(date(2024, 1, 1), date(2026, 3, 1))),
        "storage_encrypted": tri,
        "passcode_set": tri,
        "passcode_min_length": st.one_of(st.none(), st.integers(0, 12)),
        "jailbroken": tri,
        "screen_lock_enabled": tri,
        "screen_lock_timeout_s": st.one_of(st.none(), st.integers(0, 3600)),
        "firewall_enabled": tri,
        "secure_boot": tri,
        "agent_present": tri,
        "mdm_profile_present": tri,
        "work_profile_present": tri,
        "managed_apps": st.lists(
            st.sampled_from(["com.example.vpn", "com.example.payroll", "x"]), max_size=3
        ).map(lambda ids: tuple(ManagedApp(app_id=i) for i in ids)),
        "installed_apps": st.lists(
            st.sampled_from(["com.teamviewer.teamviewer", "y"]), max_size=2
        ).map(lambda ids: tuple(InstalledApp(app_id=i) for i in ids)),
    }
)


@st.composite
def inputs(draw: st.DrawFn, policies: CompiledPolicySet = DEFAULT_SET) -> EvaluationInput:
    platform = draw(platforms)
    fields = draw(postures_fields)
    posture = draw(
        st.one_of(
            st.none(),
            st.just(Posture(platform=platform, collected_at=NOW - timedelta(minutes=1), **fields)),
        )
    )
    dev = device(
        platform=platform,
        ownership=draw(st.sampled_from(list(Ownership))),
        status=draw(st.sampled_from(list(DeviceStatus))),
        user_id=draw(st.sampled_from(["alice", "alice", "mallory"])),
    )
    keys = sorted({(p.id, r.id) for p in policies.compliance for r in p.rules})
    failing = draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)) if keys else []
    failures = {k: NOW - timedelta(hours=draw(st.integers(0, 24 * 40))) for k in failing}
    return EvaluationInput(
        user=draw(
            st.one_of(
                st.none(),
                st.builds(
                    user,
                    groups=st.lists(
                        st.sampled_from(["staff", "finance", "marketing"]), max_size=3
                    ).map(tuple),
                    active=st.booleans(),
                ),
            )
        ),
        device=draw(st.one_of(st.none(), st.just(dev))),
        posture=posture,
        now=NOW,
        posture_age=draw(st.timedeltas(timedelta(0), timedelta(hours=3))),
        app=draw(st.sampled_from(APPS)),
        rule_failures=failures,
    )


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(inputs())
def test_a_critical_failure_never_allows(request: EvaluationInput) -> None:
    decision = evaluate(request, DEFAULT_SET)
    critical = [r for r in decision.reasons if r.severity is Severity.CRITICAL]
    if critical:
        assert decision.outcome is Outcome.BLOCK
    # Quarantine comes only from a critical failure (with evidence) or a quarantined device.
    if decision.quarantine:
        assert critical or (
            request.device is not None and request.device.status.value == "quarantined"
        )


@FAST
@given(inputs())
def test_deterministic_for_the_same_input_and_time(request: EvaluationInput) -> None:
    assert evaluate(request, DEFAULT_SET) == evaluate(request, DEFAULT_SET)


@FAST
@given(inputs(), st.timedeltas(timedelta(hours=1, microseconds=1), timedelta(days=60)))
def test_stale_posture_never_allows(request: EvaluationInput, age: timedelta) -> None:
    stale = EvaluationInput(**{**_fields(request), "posture_age": age})
    assert evaluate(stale, DEFAULT_SET).outcome is Outcome.BLOCK


@FAST
@given(inputs())
def test_unknown_device_never_allows(request: EvaluationInput) -> None:
    unknown = EvaluationInput(**{**_fields(request), "device": None})
    decision = evaluate(unknown, DEFAULT_SET)
    assert decision.outcome is Outcome.BLOCK
    assert "device_unknown" in {r.code.value for r in decision.reasons}


@FAST
@given(inputs())
def test_gates_never_allow(request: EvaluationInput) -> None:
    decision = evaluate(request, DEFAULT_SET)
    if decision.grants_access:
        assert request.user is not None and request.user.active
        assert request.device is not None and request.device.user_id == request.user.id
        assert request.device.status is DeviceStatus.ACTIVE
        assert request.posture is not None
        assert decision.quarantine is False


def _fields(request: EvaluationInput) -> dict:
    return {name: getattr(request, name) for name in request.__dataclass_fields__}


# -- monotonicity: one more failing rule never makes the outcome more permissive ------------

EXTRA_RULES = {
    "critical": "severity: critical",
    "high-now": "severity: high",
    "medium-grace": "severity: medium\n    grace: {warn: 0d, restrict: 1d, block: 3d}",
    "low-warn": "severity: low\n    grace: {warn: 0d}",
    "low-restrict": "severity: low\n    grace: {restrict: 0d}",
    "scoped-android": "severity: high\n    platforms: [android]\n    grace: {warn: 0d}",
}


def _with_extra(tmp: Path, spec: str) -> CompiledPolicySet:
    extra = (
        "kind: CompliancePolicy\nid: extra\nassign: {}\nmax_posture_age: 1h\nrules:\n"
        f"  - id: never-passes\n    {spec}\n    required_apps: [com.example.never-installed]\n"
        "    remediation: x\n"
    )
    return load_policy_directory(write(tmp, {"base.yaml": SIMPLE, "extra.yaml": extra}), now=NOW)


def _variants() -> tuple[CompiledPolicySet, dict[str, CompiledPolicySet]]:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="policy-variants-"))
    base_dir = root / "base"
    base_dir.mkdir()
    base = load_policy_directory(write(base_dir, {"base.yaml": SIMPLE}), now=NOW)
    variants = {}
    for name, spec in EXTRA_RULES.items():
        d = root / name
        d.mkdir()
        variants[name] = _with_extra(d, spec)
    return base, variants


BASE, VARIANTS = _variants()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs(BASE), st.sampled_from(sorted(VARIANTS)), st.integers(0, 24 * 10))
def test_adding_a_failing_rule_never_loosens(
    request: EvaluationInput, variant: str, hours_failing: int
) -> None:
    failures = dict(request.rule_failures)
    failures[("extra", "never-passes")] = NOW - timedelta(hours=hours_failing)
    request = EvaluationInput(**{**_fields(request), "rule_failures": failures})
    before = evaluate(request, BASE)
    after = evaluate(request, VARIANTS[variant])
    assert after.outcome.rank >= before.outcome.rank
    assert after.quarantine >= before.quarantine


REPORT_ONLY_EXTRA = (
    "kind: CompliancePolicy\nid: watch\nmode: report-only\nassign: {}\nmax_posture_age: 1m\n"
    "rules:\n  - {id: jb, severity: critical, not_jailbroken: true, remediation: x}\n"
    "  - {id: never, severity: high, required_apps: [never.installed], remediation: x}\n"
)


def _with_report_only() -> CompiledPolicySet:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="policy-report-only-"))
    return load_policy_directory(
        write(root, {"base.yaml": SIMPLE, "watch.yaml": REPORT_ONLY_EXTRA}), now=NOW
    )


WITH_REPORT_ONLY = _with_report_only()


@FAST
@given(inputs(BASE))
def test_report_only_policies_never_change_the_outcome(request: EvaluationInput) -> None:
    plain = evaluate(request, BASE)
    watched = evaluate(request, WITH_REPORT_ONLY)
    assert watched.outcome is plain.outcome
    assert watched.quarantine is plain.quarantine
    assert watched.reasons == plain.reasons
