"""The CEL memo (``CelCondition.evaluate``) answers what the CEL program answers.

For generated postures, devices and users, a condition's memoised answer (asked twice: a
miss, then a hit) equals running its program on the same values with no memo: the same bool,
or a :class:`CelEvaluationError` with the same text.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm_core.policy.cel import CelCondition, CelEvaluationError, compile_condition
from mdm_core.posture.model import Platform, Posture

from .factories import NOW
from .test_engine_equivalence import CELS, posture_fields

CONDITIONS = [compile_condition(source) for source in CELS] + [
    compile_condition('device.platform == "ios" && posture.passcode_set == true'),
    compile_condition("user.groups.size() > 1 || posture.os_build == null"),
]


def _answer(call: object) -> tuple[str, object]:
    assert callable(call)
    try:
        return "ok", call()
    except CelEvaluationError as exc:
        return "error", str(exc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(CONDITIONS),
    posture_fields,
    st.sampled_from(["ios", "android", "macos"]),
    st.sampled_from(["corporate", "byod"]),
    st.frozensets(st.sampled_from(["staff", "finance", "eng"])),
    st.timedeltas(timedelta(0), timedelta(days=2)),
)
def test_memoised_answer_is_the_programs(
    condition: CelCondition,
    fields: dict[str, object],
    platform: str,
    ownership: str,
    groups: frozenset[str],
    offset: timedelta,
) -> None:
    posture = Posture(platform=Platform(platform), collected_at=NOW, **fields)  # type: ignore[arg-type]
    now = NOW + offset
    raw = tuple(getattr(posture, f) for f in condition.posture_fields)
    want = _answer(lambda: condition._run(raw, platform, ownership, "alice", groups, now))
    for _ in range(2):  # a miss, then (unless it reads `now`) a hit
        got = _answer(
            lambda: condition.evaluate(
                posture,
                platform=platform,
                ownership=ownership,
                user_id="alice",
                groups=groups,
                now=now,
            )
        )
        assert got == want
