"""What-if: explain the decision a user would get on a device for an app, without a login.

Reads the same state a login would (the user in the directory mirror, the device, its latest
stored posture and its age, the per-rule first failures) in one read-only unit of work, runs
the pure engine, and returns a JSON-ready explanation. Nothing is written, nobody is logged
in, no event is emitted. The CLI (``posture policy what-if``) and the admin API
(``GET /admin/api/what-if``) both call :func:`what_if`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from mdm_core.directory.mirror import user_context
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.engine import evaluate
from mdm_core.policy.model import Decision, EvaluationInput
from mdm_core.storage.uow import Storage

__all__ = ["what_if", "what_if_decision"]


def what_if_decision(
    storage: Storage,
    policies: CompiledPolicySet,
    *,
    user_id: str,
    device_id: str | None,
    app: str | None,
    now: datetime,
) -> tuple[Decision, dict[str, Any]]:
    """The decision and a JSON description of the input it was made on."""
    with storage.unit_of_work() as uow:
        user = user_context(uow, user_id)
        device = uow.devices.get(device_id) if device_id else None
        stored = uow.posture.latest(device_id) if device_id else None
        failures = uow.compliance.rule_failures(device_id) if device_id else {}
    posture = stored.posture if stored is not None else None
    age: timedelta | None = None
    if stored is not None:
        age = max(now - stored.received_at, timedelta(0))
    decision = evaluate(
        EvaluationInput(
            user=user,
            device=device,
            posture=posture,
            now=now,
            posture_age=age,
            app=app,
            rule_failures=failures,
        ),
        policies,
    )
    described: dict[str, Any] = {
        "user": {
            "id": user_id,
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
        "app": app,
        "posture": None
        if stored is None
        else {
            "received_at": stored.received_at.isoformat(),
            "collected_at": stored.posture.collected_at.isoformat(),
            "age_s": age.total_seconds() if age is not None else None,
        },
        "rule_failures": {f"{p}/{r}": t.isoformat() for (p, r), t in sorted(failures.items())},
        "policy_set": policies.fingerprint,
        "now": now.isoformat(),
    }
    return decision, described


def what_if(
    storage: Storage,
    policies: CompiledPolicySet,
    *,
    user_id: str,
    device_id: str | None,
    app: str | None,
    now: datetime,
) -> dict[str, Any]:
    """``{"input": {...}, "decision": {...}}``: the explanation as JSON-ready data."""
    decision, described = what_if_decision(
        storage, policies, user_id=user_id, device_id=device_id, app=app, now=now
    )
    return {"input": described, "decision": decision.to_json()}
