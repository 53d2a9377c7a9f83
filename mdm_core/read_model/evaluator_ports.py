"""The read model under the access evaluator: its read protocol and its audit, cached and batched.

:class:`CachedAccessState` is the evaluator's :class:`~mdm_core.access.state.AccessStateReader`
on :class:`~mdm_core.read_model.decision_reads.DecisionReads` (the version-checked cache: a warm
decision reads its state in one statement). :class:`GroupCommitDecisionAudit` is its
:class:`~mdm_core.access.audit.DecisionAudit` on an
:class:`~mdm_core.read_model.wiring.AuditRecorder` (the group-commit writer): the decision
still waits until its own record is durable, and a record that is not durable raises, so the
evaluator answers ``block`` (no audit, no access). :class:`CachedLoginProofs` is its
:class:`~mdm_core.access.evaluator.LoginProofs`: the device proof verifier with the device's
identity served by the read model (``device:<id>`` guards it) instead of a query per proof.
"""

from __future__ import annotations

from collections.abc import Callable

from mdm_core.access.audit import audit_detail
from mdm_core.access.decision import Decision
from mdm_core.access.request import AccessRequest
from mdm_core.access.state import AccessState
from mdm_core.device.proof import DeviceProofVerifier, VerifiedLoginProof
from mdm_core.domain.model import DeviceRecord
from mdm_core.read_model.decision_reads import CachedDecisionReads, DecisionReads
from mdm_core.read_model.wiring import AuditRecorder

__all__ = ["CachedAccessState", "CachedLoginProofs", "GroupCommitDecisionAudit"]


class CachedAccessState:
    """:class:`~mdm_core.access.state.AccessStateReader` on the read model's cached reads."""

    def __init__(self, reads: DecisionReads) -> None:
        if reads is None:
            raise ValueError("CachedAccessState needs the decision reads")
        self._reads = reads

    def device(self, device_id: str) -> DeviceRecord | None:
        return self._reads.device(device_id)

    def access_state(self, user_id: str, device: DeviceRecord | None) -> AccessState:
        state = self._reads.decision_state(user_id, device.id if device is not None else None)
        if device is None:
            return AccessState(user=state.user, device=None)
        return AccessState(
            user=state.user,
            device=device,
            stored=state.posture,
            rule_failures=state.rule_failures,
        )


class GroupCommitDecisionAudit:
    """:class:`~mdm_core.access.audit.DecisionAudit` through the group-commit writer (the
    same record as :class:`~mdm_core.access.audit.SqlDecisionAudit`, durable on return)."""

    def __init__(self, writer: AuditRecorder) -> None:
        if writer is None:
            raise ValueError("GroupCommitDecisionAudit needs an audit writer")
        self._writer = writer

    def record(self, request: AccessRequest, decision: Decision) -> None:
        actor = f"user:{request.user_id}"
        self._writer.record(
            actor,
            "access.decision",
            decision.device_id or actor,
            decision.outcome,
            audit_detail(request, decision),
        )


class CachedLoginProofs:
    """:class:`~mdm_core.access.evaluator.LoginProofs` on the verifier, identities cached.

    Everything else is the verifier's own (signature, claims, nonce, time, certificate
    validity and revocation, device status, replay): only where the identity is read from
    changes, and that read is version-checked like every read of the decision."""

    def __init__(self, verifier: DeviceProofVerifier, reads: CachedDecisionReads) -> None:
        if verifier is None or reads is None:
            raise ValueError("CachedLoginProofs needs the verifier and the cached reads")
        self._verifier = verifier
        self._reads = reads

    def verify_login_proof(
        self, token: str, *, audience: str, nonce: str | Callable[[str], bool]
    ) -> VerifiedLoginProof:
        return self._verifier.verify_login_proof(
            token, audience=audience, nonce=nonce, identities=self._reads.identity
        )
