"""What-if: explain the decision a user would get on a device for an app, without a login.

Runs the live path — :meth:`mdm_core.access.evaluator.AccessEvaluator.explain`, the very
steps a login runs (the device named by the administrator stands in for the proof, like a
refresh token's device) — and returns a JSON-ready explanation: the input the decision was
made on and the engine's decision. Nothing is written (no audit record: nobody gets access),
nobody is logged in, no event is emitted. The CLI (``posture policy what-if``) and the admin
API (``GET /admin/api/what-if``) both call :func:`what_if`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mdm_core.access.evaluator import AccessEvaluator, Explanation
from mdm_core.access.request import AccessRequest

__all__ = ["what_if", "what_if_request", "describe"]


def what_if_request(
    *, user_id: str, device_id: str | None, app: str | None, now: datetime | None = None
) -> AccessRequest:
    """The access request of a what-if (channel ``what_if``, caller ``admin``)."""
    return AccessRequest(
        user_id=user_id,
        application=app,
        channel="what_if",
        caller="admin",
        requested_at=now,
        bound_device_id=device_id,
    )


def describe(explanation: Explanation, *, device_id: str | None) -> dict[str, Any]:
    """A JSON description of the input a decision was made on."""
    state = explanation.state
    user = state.user if state is not None else None
    device = state.device if state is not None else None
    stored = state.stored if state is not None else None
    chosen = explanation.chosen
    failures = state.rule_failures if state is not None else {}
    return {
        "user": {
            "id": explanation.request.user_id,
            "known": user is not None,
            "active": user.active if user is not None else None,
            "groups": sorted(user.groups) if user is not None else [],
        },
        "device": None
        if device is None
        else {
            "id": device.id,
            "user_id": device.user_id,
            "platform": device.platform.value,
            "ownership": device.ownership.value,
            "status": device.status.value,
            "status_reason": device.status_reason,
        },
        "device_id": device_id,
        "app": explanation.request.application,
        "posture": None
        if stored is None
        else {
            "received_at": stored.received_at.isoformat(),
            "collected_at": stored.posture.collected_at.isoformat(),
            "age_s": chosen.age.total_seconds()
            if chosen is not None and chosen.age is not None
            else None,
        },
        "rule_failures": {f"{p}/{r}": t.isoformat() for (p, r), t in sorted(failures.items())},
        "policy_set": explanation.policy_set,
        "now": explanation.now.isoformat() if explanation.now is not None else None,
    }


def what_if(
    evaluator: AccessEvaluator,
    *,
    user_id: str,
    device_id: str | None,
    app: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``{"input": {...}, "decision": {...}}``: the explanation as JSON-ready data. The
    decision is the engine's (every reason with its rule, grace stage and remediation); when
    the run stopped before the engine (the state or policy set could not be read) it is the
    block the evaluator gave."""
    explanation = evaluator.explain(
        what_if_request(user_id=user_id, device_id=device_id, app=app, now=now)
    )
    decision = (
        explanation.engine.to_json()
        if explanation.engine is not None
        else explanation.decision.to_json()
    )
    return {"input": describe(explanation, device_id=device_id), "decision": decision}
