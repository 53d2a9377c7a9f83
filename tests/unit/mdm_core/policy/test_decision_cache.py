"""The decision cache (:mod:`mdm_core.policy.decision_cache`): a hit is the engine's answer.

The property: for random inputs asked at random times (in any order, across freshness ends,
grace escalations and midnights), through ONE cache, the cached answer equals the uncached
one field for field. Then the rules the property relies on, one by one: a changed input is a
miss, time-dependent results expire, invalidation, the LRU bound.
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.decision_cache import DecisionCache, validity_end
from mdm_core.policy.engine import evaluate
from mdm_core.policy.loader import load_policy_directory
from mdm_core.policy.model import EvaluationInput, Outcome
from mdm_core.posture.model import Ownership, Platform, Posture

from .factories import NOW, REPO_POLICIES, SIMPLE, device, healthy_posture, policy_set, request
from .factories import user as make_user
from .test_properties import postures_fields

DEFAULT_SET = load_policy_directory(REPO_POLICIES, now=NOW)
APPS = [None, "intranet-web", "crm-web", "payroll-web", "other"]

CLOCK_POLICY = """
kind: CompliancePolicy
id: clocked
assign: {groups: [clocked]}
max_posture_age: 30m
rules:
  - id: reads-now
    severity: low
    cel: posture.passcode_set == true || now == now
    grace: {warn: 0d}
    remediation: x
"""


def _at(r: EvaluationInput, now: datetime) -> EvaluationInput:
    return dataclasses.replace(r, now=now)


def _with_clock_policy(tmp: Path) -> CompiledPolicySet:
    shutil.copytree(REPO_POLICIES, tmp / "policies")
    (tmp / "policies" / "compliance" / "clocked.yaml").write_text(CLOCK_POLICY)
    return load_policy_directory(tmp / "policies", now=NOW)


@st.composite
def inputs(draw: st.DrawFn, policies: CompiledPolicySet) -> EvaluationInput:
    platform = draw(st.sampled_from(list(Platform)))
    fields = draw(postures_fields)
    collected = NOW - draw(st.timedeltas(timedelta(minutes=-10), timedelta(hours=2)))
    posture = draw(
        st.one_of(
            st.none(),
            st.just(
                Posture.model_validate({"platform": platform, "collected_at": collected, **fields})
            ),
        )
    )
    dev = device(
        id=draw(st.sampled_from(["dev-1", "dev-2"])),
        platform=platform,
        ownership=draw(st.sampled_from(list(Ownership))),
        status=draw(st.sampled_from([DeviceStatus.ACTIVE] * 3 + list(DeviceStatus))),
        user_id=draw(st.sampled_from(["alice", "alice", "mallory"])),
    )
    keys = sorted({(p.id, r.id) for p in policies.compliance for r in p.rules})
    failing = draw(st.lists(st.sampled_from(keys), max_size=6, unique=True))
    failures = {k: NOW - timedelta(hours=draw(st.integers(-24, 24 * 40))) for k in failing}
    groups = draw(st.lists(st.sampled_from(["staff", "finance", "clocked"]), max_size=3))
    return EvaluationInput(
        user=draw(
            st.one_of(
                st.none(),
                st.builds(make_user, groups=st.just(tuple(groups)), active=st.booleans()),
            )
        ),
        device=draw(st.one_of(st.none(), st.just(dev), st.just(dev))),
        posture=posture,
        now=NOW,
        posture_age=draw(
            st.one_of(st.none(), st.none(), st.timedeltas(timedelta(0), timedelta(hours=3)))
        ),
        app=draw(st.sampled_from(APPS)),
        rule_failures=failures,
    )


#: Offsets from NOW: around freshness ends (30 min, 1 h), grace stages (days), midnight (12 h).
offsets = st.one_of(
    st.timedeltas(timedelta(minutes=-5), timedelta(hours=2)),
    st.timedeltas(timedelta(hours=11, minutes=59), timedelta(hours=12, minutes=1)),
    st.timedeltas(timedelta(0), timedelta(days=40)),
)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _cached_equals_uncached(
    policies: CompiledPolicySet, asks: list[tuple[EvaluationInput, list[timedelta]]]
) -> None:
    cache = DecisionCache(max_entries=3)
    for base, times in asks:
        for offset in times:
            r = _at(base, NOW + offset)
            assert cache.evaluate(r, policies) == evaluate(r, policies)


@PROPERTY
@given(
    st.lists(
        st.tuples(inputs(DEFAULT_SET), st.lists(offsets, min_size=1, max_size=6)),
        min_size=1,
        max_size=4,
    )
)
def test_cached_equals_uncached_at_any_time(
    asks: list[tuple[EvaluationInput, list[timedelta]]],
) -> None:
    _cached_equals_uncached(DEFAULT_SET, asks)


@PROPERTY
@given(
    st.lists(
        st.tuples(inputs(DEFAULT_SET), st.lists(offsets, min_size=1, max_size=6)),
        min_size=1,
        max_size=4,
    )
)
def test_cached_equals_uncached_when_the_age_counts_from_an_anchor(
    asks: list[tuple[EvaluationInput, list[timedelta]]],
) -> None:
    """As the access evaluator asks: the age counts from when the report was received, so
    it grows with ``now`` (``posture_age = now - anchor``), and repeats match on the anchor."""
    cache = DecisionCache(max_entries=3)
    for base, times in asks:
        anchor = NOW - (base.posture_age or timedelta(0))
        for offset in times:
            now = NOW + offset
            if now < anchor:
                continue  # an age is never negative
            r = dataclasses.replace(base, now=now, posture_age=now - anchor)
            assert cache.evaluate(r, DEFAULT_SET) == evaluate(r, DEFAULT_SET)


def test_a_repeat_with_the_same_anchor_hits_until_the_posture_is_stale() -> None:
    base = _healthy(posture_age=timedelta(minutes=1))
    cache = DecisionCache()
    anchor = NOW - timedelta(minutes=1)
    first = cache.evaluate(base, DEFAULT_SET)
    later = dataclasses.replace(
        base, now=NOW + timedelta(minutes=5), posture_age=timedelta(minutes=6)
    )
    again = cache.evaluate(later, DEFAULT_SET)
    assert cache.stats().hits == 1 and again == evaluate(later, DEFAULT_SET)
    assert first.outcome == again.outcome
    stale_at = anchor + min(p.max_posture_age for p in DEFAULT_SET.compliance) + timedelta(hours=1)
    old = dataclasses.replace(base, now=stale_at, posture_age=stale_at - anchor)
    assert cache.evaluate(old, DEFAULT_SET) == evaluate(old, DEFAULT_SET)
    assert cache.stats().hits == 1  # past freshness: evaluated again, not served


@PROPERTY
@given(st.data())
def test_cached_equals_uncached_with_a_rule_reading_now(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    policies = _clock_set(tmp_path_factory)
    asks = data.draw(
        st.lists(
            st.tuples(inputs(policies), st.lists(offsets, min_size=1, max_size=4)),
            min_size=1,
            max_size=3,
        )
    )
    _cached_equals_uncached(policies, asks)


_CLOCK_SET: list[CompiledPolicySet] = []


def _clock_set(factory: pytest.TempPathFactory) -> CompiledPolicySet:
    if not _CLOCK_SET:
        _CLOCK_SET.append(_with_clock_policy(factory.mktemp("clocked")))
    return _CLOCK_SET[0]


# --- the rules the property relies on ------------------------------------------------------


def _healthy(**over: object) -> EvaluationInput:
    return request(**{"posture_age": None, **over})


def test_a_repeated_question_is_a_hit_restamped_with_the_new_time(tmp_path: Path) -> None:
    policies = policy_set(tmp_path, {"c.yaml": SIMPLE})
    cache = DecisionCache()
    first = cache.evaluate(_healthy(), policies)
    later = _healthy(now=NOW + timedelta(minutes=10))
    again = cache.evaluate(later, policies)
    assert first.outcome is Outcome.ALLOW
    assert again == evaluate(later, policies)
    assert again.evaluated_at == later.now
    assert again.posture_age == timedelta(minutes=15)
    assert cache.stats().hits == 1


def test_every_changed_input_is_a_miss(tmp_path: Path) -> None:
    policies = policy_set(tmp_path, {"c.yaml": SIMPLE})
    cache = DecisionCache()
    base = _healthy()
    cache.evaluate(base, policies)
    variants = [
        _healthy(posture=healthy_posture(jailbroken=True)),
        _healthy(device=device(status=DeviceStatus.QUARANTINED)),
        _healthy(user=make_user(active=False)),
        _healthy(user=make_user(groups=("staff", "finance"))),
        _healthy(posture_age=timedelta(hours=2)),
        _healthy(rule_failures={("base", "encrypted"): NOW - timedelta(days=1)}),
    ]
    for variant in variants:
        assert cache.evaluate(variant, policies) == evaluate(variant, policies)
    assert cache.stats().hits == 0
    # A reloaded set is a new object: a miss even with equal content.
    reloaded = policy_set(tmp_path / "again", {"c.yaml": SIMPLE})
    cache.evaluate(base, reloaded)
    assert cache.stats().hits == 0


def test_an_allow_expires_when_the_posture_turns_stale(tmp_path: Path) -> None:
    policies = policy_set(tmp_path, {"c.yaml": SIMPLE})  # max_posture_age 1h
    cache = DecisionCache()
    assert cache.evaluate(_healthy(), policies).outcome is Outcome.ALLOW
    collected = healthy_posture().collected_at
    cacheable, until = validity_end(cache, _healthy(), policies)
    assert cacheable and until == collected + timedelta(hours=1, microseconds=1)
    last_fresh = _healthy(now=collected + timedelta(hours=1))
    assert cache.evaluate(last_fresh, policies).outcome is Outcome.ALLOW
    stale = _healthy(now=collected + timedelta(hours=1, microseconds=1))
    assert cache.evaluate(stale, policies).outcome is Outcome.BLOCK


def test_a_grace_stage_expires_at_its_escalation(tmp_path: Path) -> None:
    policies = DEFAULT_SET
    first = NOW - timedelta(days=6)
    base = _healthy(
        posture=healthy_posture(os_version="16.0"),
        rule_failures={
            ("hygiene", "os-current"): first,
            ("next-baseline", "os-current-next"): first,
        },
    )
    cache = DecisionCache()
    assert cache.evaluate(base, policies).outcome is Outcome.WARN
    escalation = first + timedelta(days=7)
    cacheable, until = validity_end(cache, base, policies)
    assert cacheable and until is not None and until <= escalation
    after = _at(base, escalation)
    assert cache.evaluate(after, policies) == evaluate(after, policies)
    assert evaluate(after, policies).outcome is not Outcome.WARN


def test_a_rule_failing_for_the_first_time_is_restamped_on_a_hit() -> None:
    base = _healthy(posture=healthy_posture(os_version="16.0"), posture_age=timedelta(0))
    cache = DecisionCache()
    first = cache.evaluate(base, DEFAULT_SET)
    assert {r.first_failed_at for r in first.reasons + first.report_only} == {NOW}
    later = _at(base, NOW + timedelta(days=3))
    again = cache.evaluate(later, DEFAULT_SET)
    assert cache.stats().hits == 1
    assert again == evaluate(later, DEFAULT_SET)
    assert {r.first_failed_at for r in again.reasons + again.report_only} == {later.now}


def test_a_patch_age_rule_bounds_the_entry_by_midnight() -> None:
    android = device(platform=Platform.ANDROID)
    base = _healthy(
        device=android,
        posture=healthy_posture(Platform.ANDROID, security_patch_level=date(2026, 2, 15)),
        posture_age=timedelta(0),
    )
    cacheable, until = validity_end(DecisionCache(), base, DEFAULT_SET)
    assert cacheable and until == datetime(2026, 3, 2, tzinfo=NOW.tzinfo)


def test_a_cel_condition_reading_now_is_never_cached(tmp_path: Path) -> None:
    policies = _with_clock_policy(tmp_path)
    base = _healthy(user=make_user(groups=("staff", "clocked")), posture_age=timedelta(0))
    cache = DecisionCache()
    cache.evaluate(base, policies)
    cache.evaluate(base, policies)
    assert cache.stats().hits == 0 and cache.stats().entries == 0


def test_an_earlier_time_is_a_miss(tmp_path: Path) -> None:
    policies = policy_set(tmp_path, {"c.yaml": SIMPLE})
    cache = DecisionCache()
    cache.evaluate(_healthy(), policies)
    earlier = _healthy(now=NOW - timedelta(minutes=6))  # posture from the future by then
    assert cache.evaluate(earlier, policies) == evaluate(earlier, policies)
    assert cache.stats().hits == 0


def test_invalidation_by_device_user_and_clear(tmp_path: Path) -> None:
    policies = policy_set(tmp_path, {"c.yaml": SIMPLE})
    cache = DecisionCache()
    for app in (None, "crm-web"):
        cache.evaluate(_healthy(app=app), policies)
    other = _healthy(device=device(id="dev-2", user_id="bob"), user=make_user("bob"))
    cache.evaluate(other, policies)
    assert cache.stats().entries == 3
    assert cache.invalidate_device("dev-1") == 2
    assert cache.invalidate_device("dev-1") == 0
    assert cache.invalidate_user("nobody") == 0
    assert cache.invalidate_user("bob") == 1
    assert cache.stats().entries == 0
    cache.evaluate(_healthy(), policies)
    cache.clear()
    assert cache.stats().entries == 0
    cache.evaluate(_healthy(), policies)
    assert cache.stats().hits == 0


def test_the_cache_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    policies = policy_set(tmp_path, {"c.yaml": SIMPLE})
    cache = DecisionCache(max_entries=2)
    a, b, c = (_healthy(device=device(id=f"dev-{i}")) for i in "abc")
    cache.evaluate(a, policies)
    cache.evaluate(b, policies)
    cache.evaluate(a, policies)  # a is now the most recent
    cache.evaluate(c, policies)  # evicts b
    assert cache.stats().entries == 2
    cache.evaluate(a, policies)
    hits = cache.stats().hits
    cache.evaluate(b, policies)
    assert cache.stats().hits == hits  # b was evicted: a miss
    with pytest.raises(ValueError, match="max_entries"):
        DecisionCache(max_entries=0)
