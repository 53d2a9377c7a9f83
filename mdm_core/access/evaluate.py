"""The pure steps of an access decision: choose the posture, evaluate. No I/O.

Written once and used by every evaluation in the code base: the access evaluator (every login
channel and what-if) and the compliance evaluation at check-in
(:mod:`mdm_core.policy.compliance_hook`), which evaluates the posture just stored.

- :func:`stored_posture`: the stored posture with its age by the server's clock (now minus
  the time it was received), or none.
- :func:`snapshot_choice`: a signed snapshot (already read by the check-in's own code path)
  against the stored posture: ``stale`` when older than the snapshot's maximum age, ``older``
  when not newer than the stored report, else ``used``: laid over the stored posture
  (:func:`mdm_core.posture.merge.overlay_snapshot`; a field the snapshot does not establish
  keeps its stored value and that report's age).
- :func:`evaluate_state`: the one place an :class:`~mdm_core.policy.model.EvaluationInput` is
  built; the pure engine decides on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mdm_core.access.state import AccessState
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.engine import evaluate
from mdm_core.policy.model import Decision as EngineDecision
from mdm_core.policy.model import EvaluationInput
from mdm_core.posture.merge import overlay_snapshot
from mdm_core.posture.model import Posture

#: The policy engine's signature: :func:`mdm_core.policy.engine.evaluate` or a cache of it.
Engine = Callable[[EvaluationInput, CompiledPolicySet], EngineDecision]

__all__ = ["Engine", "ChosenPosture", "stored_posture", "snapshot_choice", "evaluate_state"]


@dataclass(frozen=True, slots=True)
class ChosenPosture:
    """The posture a decision is made on, its age, and what became of a snapshot
    (``used | refused | stale | older``; ``None`` when there was none)."""

    posture: Posture | None
    age: timedelta | None
    snapshot: str | None = None


def stored_posture(state: AccessState, now: datetime) -> ChosenPosture:
    """The stored posture and its age (never negative), or no posture at all."""
    if state.stored is None:
        return ChosenPosture(posture=None, age=None)
    return ChosenPosture(
        posture=state.stored.posture, age=max(now - state.stored.received_at, timedelta(0))
    )


def snapshot_choice(
    stored: ChosenPosture, snapshot: Posture, *, now: datetime, max_age: timedelta
) -> ChosenPosture:
    """``stored`` or the readable ``snapshot`` laid over it (see the module docstring). The
    merged posture must still be filtered by the device's privacy profile by the caller."""
    if now - snapshot.collected_at > max_age:
        return ChosenPosture(stored.posture, stored.age, "stale")
    if stored.posture is not None and snapshot.collected_at <= stored.posture.collected_at:
        return ChosenPosture(stored.posture, stored.age, "older")
    merged = overlay_snapshot(stored.posture, snapshot)
    # The age is the merged posture's: the older report's when a field was carried over.
    return ChosenPosture(merged, max(now - merged.collected_at, timedelta(0)), "used")


def evaluate_state(
    state: AccessState,
    chosen: ChosenPosture,
    *,
    app: str | None,
    now: datetime,
    policies: CompiledPolicySet,
    engine: Engine = evaluate,
) -> EngineDecision:
    """The engine's decision on ``state`` with the ``chosen`` posture, for ``app`` at ``now``
    (``engine``: :func:`~mdm_core.policy.engine.evaluate`, or a
    :class:`~mdm_core.policy.decision_cache.DecisionCache`'s ``evaluate`` in front of it)."""
    return engine(
        EvaluationInput(
            user=state.user,
            device=state.device,
            posture=chosen.posture,
            now=now,
            posture_age=chosen.age,
            app=app,
            rule_failures=state.rule_failures,
        ),
        policies,
    )
