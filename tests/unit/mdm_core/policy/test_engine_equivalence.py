"""The engine equals the frozen reference engine on every input (hypothesis).

``reference_engine.reference_evaluate`` is the engine as it was before its hot path was
indexed and precomputed, written the obvious way (every applicable rule's own closure). Here
both are asked about generated policy sets (random rules of every check kind, severities,
grace timelines, platform/ownership scopes, group assignments, report-only policies, CEL that
reads the device, the user, ``now`` or fails on unreported fields) and generated requests
(postures with unreported fields, other platforms, stale or future-dated reports, devices of
every status, unknown/inactive users, recorded first failures in the past and the future, any
app, any time), and their decisions must be equal field for field, reasons in order included.
"""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.decision_cache import DecisionCache
from mdm_core.policy.engine import evaluate
from mdm_core.policy.loader import load_policy_directory
from mdm_core.policy.model import Decision, EvaluationInput, Reason
from mdm_core.posture.model import InstalledApp, ManagedApp, Ownership, Platform, Posture

from .factories import NOW, REPO_POLICIES, device, user
from .reference_engine import reference_evaluate

GROUPS = ["staff", "finance", "eng", "ops", "eng-team1"]
APPS = [None, "intranet-web", "crm-web", "payroll-web", "https://erp.example.com/saml", "nope"]
PLATFORMS = [p.value for p in Platform]
ACCESS = (REPO_POLICIES / "access.yaml").read_text(encoding="utf-8")

#: CEL conditions: device/user/now readers, ones that fail (error) on unreported fields,
#: whole-posture use; each passes the compiler's fully-reported sample check.
CELS = [
    "posture.screen_lock_enabled == true && posture.passcode_set == true",
    "posture.passcode_min_length >= 8",
    'posture.os_build in ["21A329", "22D63", "x"]',
    'device.ownership == "corporate"',
    '"finance" in user.groups || user.id == "alice"',
    'now > timestamp("2026-03-01T06:00:00Z")',
    'posture.security_patch_level > timestamp("2025-06-01T00:00:00Z")',
    "size(posture.managed_apps) > 0",
    '!(posture.os_version in ["13", "17.1"]) && posture.storage_encrypted == true',
]
FLAGS = {
    "not_jailbroken": "true",
    "storage_encrypted": "required",
    "firewall": "required",
    "secure_boot": "required",
    "agent_present": "required",
    "mdm_profile_present": "required",
    "work_profile_present": "required",
}


@st.composite
def check(draw: st.DrawFn, key: str) -> str:
    """The YAML of one check ``key``."""
    if key in FLAGS:
        return f"{key}: {FLAGS[key]}"
    if key == "min_os_version":
        spec = draw(
            st.dictionaries(
                st.sampled_from(PLATFORMS),
                st.sampled_from(["13", "14", "17.4", "10.0.22631", "15.3", "6.8"]),
                min_size=1,
            )
        )
        return "min_os_version: {" + ", ".join(f'{p}: "{v}"' for p, v in spec.items()) + "}"
    if key == "min_security_patch_level":
        return "min_security_patch_level: " + draw(st.sampled_from(["30d", "90d", "2025-12-01"]))
    if key == "passcode_min_length":
        return f"passcode_min_length: {draw(st.integers(4, 10))}"
    if key == "screen_lock_max_timeout":
        return "screen_lock_max_timeout: " + draw(st.sampled_from(["5m", "15m", "1h"]))
    if key == "required_apps":
        apps = draw(st.sets(st.sampled_from(["com.example.vpn", "com.example.mail"]), min_size=1))
        return f"required_apps: [{', '.join(sorted(apps))}]"
    if key == "forbidden_apps":
        apps = draw(st.sets(st.sampled_from(["com.teamviewer.teamviewer", "y"]), min_size=1))
        return f"forbidden_apps: [{', '.join(sorted(apps))}]"
    if key == "vulnerable_os_builds":
        builds = draw(st.sets(st.sampled_from(["21A329", "22D63", "24D60", " X "]), min_size=1))
        return "vulnerable_os_builds: [" + ", ".join(f'"{b}"' for b in sorted(builds)) + "]"
    assert key == "cel"
    return f"cel: {draw(st.sampled_from(CELS))!r}"


CHECK_KEYS = [*FLAGS, "min_os_version", "min_security_patch_level", "passcode_min_length"]
CHECK_KEYS += ["screen_lock_max_timeout", "required_apps", "forbidden_apps"]
CHECK_KEYS += ["vulnerable_os_builds", "cel"]


@st.composite
def rule(draw: st.DrawFn, rule_id: str, key: str) -> str:
    severity = draw(mostly("medium", "critical", "high", "low", odds=1))
    lines = [f"  - id: {rule_id}", f"    severity: {severity}", f"    {draw(check(key))}"]
    if severity != "critical" and draw(mostly(True, False, odds=4)):
        stages = draw(
            st.lists(st.sampled_from(["warn", "restrict", "block"]), min_size=1, unique=True)
        )
        stages = sorted(stages, key=["warn", "restrict", "block"].index)
        if stages:
            days = sorted(draw(st.sets(st.integers(1, 20), min_size=len(stages))))[: len(stages)]
            days[0] = 0
            lines.append(
                "    grace: {"
                + ", ".join(f"{s}: {d}d" for s, d in zip(stages, days, strict=True))
                + "}"
            )
    if draw(st.booleans()):
        chosen = draw(st.sets(st.sampled_from(PLATFORMS), min_size=1))
        lines.append(f"    platforms: [{', '.join(sorted(chosen))}]")
    if draw(st.integers(0, 3)) == 0:
        lines.append(f"    ownership: [{draw(st.sampled_from(['corporate', 'byod']))}]")
    if draw(st.integers(0, 3)) == 0:
        lines.append("    message: A custom message.")
    lines.append("    remediation: Fix it.")
    return "\n".join(lines)


@st.composite
def compliance_policy(draw: st.DrawFn, index: int) -> str:
    keys = draw(st.lists(st.sampled_from(CHECK_KEYS), min_size=1, max_size=8))
    # one typed check per policy (the compiler refuses overlapping repeats); CEL may repeat
    typed = list(dict.fromkeys(k for k in keys if k != "cel"))
    keys = typed + [k for k in keys if k == "cel"]
    rules = [draw(rule(f"r{i}", k)) for i, k in enumerate(keys)]
    assign: list[str] = []
    if draw(mostly(False, True, odds=2)):
        assign.append(f"groups: [{', '.join(draw(st.sets(st.sampled_from(GROUPS), min_size=1)))}]")
    if draw(st.integers(0, 3)) == 0:
        chosen = draw(st.sets(st.sampled_from(PLATFORMS), min_size=1))
        assign.append(f"platforms: [{', '.join(sorted(chosen))}]")
    if draw(st.integers(0, 3)) == 0:
        assign.append(f"ownership: [{draw(st.sampled_from(['corporate', 'byod']))}]")
    mode = draw(mostly("enforce", "report-only", odds=4))
    age = draw(st.sampled_from(["10m", "30m", "1h", "2h"]))
    return (
        f"kind: CompliancePolicy\nid: p{index}\nmode: {mode}\n"
        f"assign: {{{', '.join(assign)}}}\nmax_posture_age: {age}\nrules:\n"
        + "\n".join(rules)
        + "\n"
    )


_SETS: dict[tuple[str, ...], CompiledPolicySet] = {}


def _compile(texts: tuple[str, ...]) -> CompiledPolicySet:
    if texts not in _SETS:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "access.yaml").write_text(ACCESS, encoding="utf-8")
            for i, text in enumerate(texts):
                (root / f"c{i}.yaml").write_text(text, encoding="utf-8")
            _SETS[texts] = load_policy_directory(root, now=NOW)
    return _SETS[texts]


@st.composite
def policy_sets(draw: st.DrawFn) -> CompiledPolicySet:
    n = draw(st.sampled_from([0, 1, 1, 2, 2, 3, 3, 4, 5, 6]))
    return _compile(tuple(draw(compliance_policy(i)) for i in range(n)))


def mostly(good: Any, *others: Any, odds: int = 9) -> st.SearchStrategy[Any]:
    """``good`` ``odds`` times out of ``odds + 1``, else one of ``others``: most requests pass
    the gates and most devices are healthy, so every outcome (and every app's answer to it)
    is reached, not only ``block``."""
    return st.sampled_from([good] * odds * len(others) + list(others))


posture_fields = st.fixed_dictionaries(
    {
        "os_version": mostly("18.3", None, "1", "13", "14", "17.1", "10.0.22631", "v6.8.1", "?"),
        "os_build": mostly("22E240", None, "21A329", "22D63", "24D60", " x ", "x"),
        "security_patch_level": mostly(date(2026, 2, 20), None).flatmap(
            lambda d: st.just(d) if d is None else st.just(d) | st.dates(date(2024, 1, 1), d)
        ),
        "storage_encrypted": mostly(True, False, None),
        "passcode_set": mostly(True, False, None),
        "passcode_min_length": mostly(10, None, 0, 4, 6, 7, 8, 9, 12),
        "jailbroken": mostly(False, True, None),
        "screen_lock_enabled": mostly(True, False, None),
        "screen_lock_timeout_s": mostly(60, None, 0, 300, 900, 901, 3600),
        "firewall_enabled": mostly(True, False, None),
        "secure_boot": mostly(True, False, None),
        "agent_present": mostly(True, False, None),
        "mdm_profile_present": mostly(True, False, None),
        "work_profile_present": mostly(True, False, None),
        "managed_apps": st.lists(
            mostly("com.example.vpn", "com.example.mail", "y"), max_size=3
        ).map(lambda ids: tuple(ManagedApp(app_id=i) for i in ids)),
        "installed_apps": st.lists(
            mostly("com.example.mail", "com.teamviewer.teamviewer", "y"), max_size=2
        ).map(lambda ids: tuple(InstalledApp(app_id=i) for i in ids)),
    }
)


@st.composite
def requests(draw: st.DrawFn, policies: CompiledPolicySet) -> EvaluationInput:
    platform = draw(st.sampled_from(list(Platform)))
    now = NOW + draw(st.timedeltas(timedelta(0), timedelta(days=3)))
    posture: Posture | None = None
    if draw(mostly(True, False, odds=30)):
        posture_platform = draw(mostly(platform, *Platform, odds=30))
        collected = now - draw(
            st.one_of(
                st.timedeltas(timedelta(0), timedelta(minutes=9)),
                st.timedeltas(timedelta(0), timedelta(minutes=9)),
                st.timedeltas(timedelta(minutes=-15), timedelta(hours=3)),
                st.timedeltas(timedelta(0), timedelta(minutes=9)),
            )
        )
        posture = Posture(platform=posture_platform, collected_at=collected, **draw(posture_fields))
    dev = device(
        platform=platform,
        ownership=draw(st.sampled_from(list(Ownership))),
        status=draw(mostly(DeviceStatus.ACTIVE, *DeviceStatus, odds=30)),
        user_id=draw(mostly("alice", "mallory", odds=30)),
    )
    keys = sorted({(p.id, r.id) for p in policies.compliance for r in p.rules})
    failing = draw(st.lists(st.sampled_from(keys), max_size=6, unique=True)) if keys else []
    failures = {k: now - timedelta(hours=draw(st.integers(-48, 24 * 30))) for k in failing}
    the_user = draw(
        mostly(True, False, odds=30).flatmap(
            lambda known: (
                st.builds(
                    user,
                    uid=mostly("alice", "bob", odds=30),
                    groups=st.lists(st.sampled_from([*GROUPS, "other"]), max_size=4).map(tuple)
                    | st.just(tuple(GROUPS)),
                    active=mostly(True, False, odds=30),
                )
                if known
                else st.none()
            )
        )
    )
    return EvaluationInput(
        user=the_user,
        device=draw(mostly(dev, None, odds=30)),
        posture=posture,
        now=now,
        posture_age=draw(
            st.one_of(
                st.none(),
                st.timedeltas(timedelta(0), timedelta(minutes=9)),
                st.timedeltas(timedelta(0), timedelta(minutes=9)),
                st.timedeltas(timedelta(minutes=-10), timedelta(hours=3)),
                st.timedeltas(timedelta(0), timedelta(minutes=9)),
            )
        ),
        app=draw(st.sampled_from(APPS)),
        rule_failures=failures,
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[CompiledPolicySet, list[EvaluationInput]]:
    policies = draw(policy_sets())
    return policies, draw(st.lists(requests(policies), min_size=1, max_size=8))


def _same(got: Decision, want: Decision) -> None:
    assert type(got) is Decision
    assert got == want
    for mine, theirs in zip(
        got.reasons + got.report_only, want.reasons + want.report_only, strict=True
    ):
        assert type(mine) is Reason
        assert mine == theirs
        assert type(mine.first_failed_at) is type(theirs.first_failed_at)
    assert type(got.failing_rules) is frozenset


EQUIVALENCE = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@EQUIVALENCE
@given(cases())
def test_engine_equals_the_reference(case: tuple[CompiledPolicySet, list[EvaluationInput]]) -> None:
    policies, asks = case
    for request in asks:
        _same(evaluate(request, policies), reference_evaluate(request, policies))


@EQUIVALENCE
@given(cases())
def test_decision_cache_equals_the_reference(
    case: tuple[CompiledPolicySet, list[EvaluationInput]],
) -> None:
    policies, asks = case
    cache = DecisionCache(max_entries=4)
    for request in asks + asks:  # the second pass is mostly hits
        _same(cache.evaluate(request, policies), reference_evaluate(request, policies))


DEFAULT_SET = load_policy_directory(REPO_POLICIES, now=NOW)


@EQUIVALENCE
@given(st.lists(requests(DEFAULT_SET), min_size=1, max_size=5))
def test_shipped_policies_equal_the_reference(asks: list[EvaluationInput]) -> None:
    for request in asks:
        _same(evaluate(request, DEFAULT_SET), reference_evaluate(request, DEFAULT_SET))


@EQUIVALENCE
@given(
    policy_sets(),
    st.frozensets(st.sampled_from([*GROUPS, "other"])),
    st.sampled_from(list(Platform)),
    st.sampled_from(list(Ownership)),
)
def test_compliance_for_is_the_assignment_filter(
    policies: CompiledPolicySet, groups: frozenset[str], platform: Platform, ownership: Ownership
) -> None:
    """The group-mask index finds exactly the policies whose assignment matches, in order,
    also once its plan memo has been cleared."""
    want = [p for p in policies.compliance if p.assign.matches(groups, platform, ownership)]
    assert policies.compliance_for(groups, platform, ownership) == want
    policies.scopes[(platform, ownership)].plans.clear()
    assert policies.compliance_for(groups, platform, ownership) == want
    assert policies.compliance_for(groups, platform, ownership) == want  # from the memo
