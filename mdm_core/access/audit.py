"""The audit record of an access decision: :class:`DecisionAudit` and its SQL implementation.

One record per live decision (``access.decision``), written by the evaluator before the
decision is returned: a decision that cannot be recorded is not made (the evaluator answers
``block`` instead). What-if decisions are not access and are not recorded.

The record: actor ``user:<id>``, subject the device id (else ``user:<id>``), outcome, and a
detail with the user, app, channel, caller, device, the reason codes, the ``policy/rule`` ids
that fired, the policy ids, the report-only codes, the posture age, quarantine and — when
the proof carried a snapshot — what became of it (``snapshot``: used, refused, stale, older).
"""

from __future__ import annotations

from typing import Any, Protocol

from mdm_core.access.decision import Decision
from mdm_core.access.request import AccessRequest
from mdm_core.storage.uow import Storage

__all__ = ["DecisionAudit", "SqlDecisionAudit", "audit_detail"]


class DecisionAudit(Protocol):
    """Where live decisions are recorded."""

    def record(self, request: AccessRequest, decision: Decision) -> None:
        """Record ``decision`` made for ``request`` durably before returning; raise when it
        cannot be recorded (the evaluator then blocks)."""
        ...


def audit_detail(request: AccessRequest, decision: Decision) -> dict[str, Any]:
    """The ``detail`` of the audit record (also what the decision log line reports)."""
    detail: dict[str, Any] = {
        "user_id": request.user_id,
        "app": request.application,
        "channel": request.channel,
        "caller": request.caller,
        "device_id": decision.device_id,
    }
    if decision.snapshot is not None:
        detail["snapshot"] = decision.snapshot
    detail.update(
        reasons=[r.code for r in decision.reasons],
        rules=[f"{r.policy_id}/{r.rule_id}" for r in decision.reasons if r.rule_id],
        policy_ids=list(decision.policy_ids),
        report_only=list(decision.report_only),
        posture_age_s=decision.posture_age_s,
        quarantine=decision.quarantine,
    )
    return detail


class SqlDecisionAudit:
    """:class:`DecisionAudit` on the audit log (one unit of work per record)."""

    def __init__(self, storage: Storage) -> None:
        if storage is None:
            raise ValueError("SqlDecisionAudit needs a storage")
        self._storage = storage

    def record(self, request: AccessRequest, decision: Decision) -> None:
        actor = f"user:{request.user_id}"
        with self._storage.unit_of_work() as uow:
            uow.audit.record(
                actor,
                "access.decision",
                decision.device_id or actor,
                decision.outcome,
                audit_detail(request, decision),
            )
