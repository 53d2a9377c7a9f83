"""The real device gate: proof -> device -> posture -> policy engine -> audited decision.

This is where the login (:class:`~posture_gateway.login.device_check.DeviceGate`) and the posture
API (:class:`~posture_gateway.access.decision.DecisionService`) meet the MDM core. One pipeline
serves
both:

1. **Prove the device**, in band and cryptographically: a device certificate forwarded by a
   trusted mTLS proxy (checked against our CA and its revocation list), or a login proof JWT
   signed by the enrolled device key over the single-use nonce and our audience. A proof that
   fails is a ``block`` with the proof's reason; no proof at all is an unknown device.
2. **Read the state** in one read-only unit of work: the user in the directory mirror (groups,
   active), the device's latest stored posture and the first-failure time of each rule.
3. **Pick the posture**: a signed snapshot carried in the login proof when it is fresh (and
   newer than the stored one), else the stored posture with its age by the server's clock.
   The snapshot has the shape of a check-in body (``{"format": ..., "report": {...}}``, what
   ``posture agent serve-loopback`` signs) and is read by the check-in's own code path
   (:meth:`mdm_core.device.checkin.CheckinService.posture_of`: format, normalisation, privacy
   profile), then laid over the stored posture
   (:func:`mdm_core.posture.merge.overlay_snapshot`): a field the snapshot does not establish
   keeps its stored value and that report's age. A snapshot that cannot be read is refused
   (the stored posture decides); it is never stored. The audit record says which happened
   (``snapshot``: ``used``, ``refused``, ``stale``, ``older``).
4. **Evaluate** with the pure engine against the policy set in force.
5. **Audit** the decision. An audit write that fails makes the decision ``block``: a
   decision that cannot be recorded is not made.

Every exception on the way is a ``block`` (fail closed).

A token refresh runs steps 2-5 too (:class:`PolicyDeviceBinding`, channel ``oidc_refresh``),
on the device the token was bound to at login: the refresh token stands in for the proof.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from mdm_core.device.checkin import report_envelope
from mdm_core.device.proof import AuthenticatedDevice
from mdm_core.domain.errors import MdmError, ProofError, RevokedCertificate
from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.engine import evaluate
from mdm_core.policy.model import Decision as EngineDecision
from mdm_core.policy.model import EvaluationInput, Outcome
from mdm_core.posture.merge import overlay_snapshot
from mdm_core.posture.model import Posture
from mdm_core.read_model import DecisionReads, StoreDecisionReads
from mdm_core.read_model.wiring import AuditRecorder, read_model_of
from mdm_core.runtime import MdmCore
from posture_gateway.access.decision import AccessRequest, Decision
from posture_gateway.access.nonces import NonceKind, NonceStore, nonce_purpose
from posture_gateway.directory.identity import DirectoryUserResolver
from posture_gateway.integrations.state import integrations
from posture_gateway.login.device_check import (
    ACR_MANAGED_DEVICE,
    LoginVerdict,
    Reason,
    blocked,
)
from posture_gateway.observability.decisions import device_label, log_decision
from posture_gateway.oidc.binding import REFRESH_CHANNEL
from posture_gateway.oidc.grants import GrantSubject
from posture_gateway.oidc.server import EXTENSION_KEY as OIDC_KEY

__all__ = [
    "DECISIONS",
    "GateResult",
    "PostureEvaluator",
    "PolicyDeviceGate",
    "PolicyDeviceBinding",
    "PolicyDecisionService",
    "SNAPSHOT_MAX_AGE",
    "init_app",
]

log = logging.getLogger(__name__)

#: A signed posture snapshot in a login proof counts as fresh posture up to this age.
SNAPSHOT_MAX_AGE = timedelta(minutes=5)

DECISIONS = Counter(
    "posture_access_decisions_total",
    "Access decisions made by the gateway, by channel and outcome.",
    ["channel", "outcome"],
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class GateResult:
    """One pipeline run: the engine's decision, or a refusal made before the engine ran."""

    decision: EngineDecision | None
    refusal: Reason | None
    device_id: str | None
    evaluated_at: datetime
    posture_collected_at: datetime | None = None
    snapshot: str | None = None  # used | refused | stale | older; None: the proof carried none
    device_label: str | None = None

    @property
    def outcome(self) -> str:
        return self.decision.outcome.value if self.decision is not None else "block"


class PostureEvaluator:
    """Runs steps 2-5 of the pipeline for an already proven (or absent) device."""

    def __init__(
        self,
        core: MdmCore,
        *,
        clock: Callable[[], datetime] = _utcnow,
        snapshot_max_age: timedelta = SNAPSHOT_MAX_AGE,
        reads: DecisionReads | None = None,
        audit_writer: AuditRecorder | None = None,
    ) -> None:
        if core is None:
            raise ValueError("PostureEvaluator needs the MDM core")
        self._core = core
        self._clock = clock
        self._snapshot_max_age = snapshot_max_age
        # The read model (mdm_core.read_model) and the group-commit audit writer; without
        # them, the stores directly and one audit transaction per decision.
        self._reads: DecisionReads = reads or StoreDecisionReads(core.storage)
        self._audit_writer = audit_writer

    def prove(
        self, *, proof: str | None, audience: str, nonce: str | None, client_cert_pem: str | None
    ) -> tuple[AuthenticatedDevice | None, dict[str, Any] | None]:
        """Step 1. Raises a :class:`ProofError` leaf when a presented proof does not hold."""
        if client_cert_pem:
            identity = self._core.ca.verify_device_certificate(client_cert_pem)
            with self._core.storage.unit_of_work() as uow:
                record = uow.devices.get(identity.device_id)
            if record is None or not hmac.compare_digest(record.cert_serial or "", identity.serial):
                raise RevokedCertificate("certificate is not the device's current certificate")
            return (
                AuthenticatedDevice(
                    device=record,
                    cert_serial=identity.serial,
                    key_thumbprint=record.key_thumbprint or "",
                ),
                None,
            )
        if proof:
            if not nonce:
                raise ValueError("a login proof needs the nonce it was bound to")
            verified = self._core.proofs.verify_login_proof(proof, audience=audience, nonce=nonce)
            return verified.device, verified.posture
        return None, None

    def run(
        self,
        *,
        user_id: str,
        device: AuthenticatedDevice | None,
        snapshot: dict[str, Any] | None,
        app: str | None,
        channel: str,
        caller: str,
    ) -> GateResult:
        """Steps 2-5: read, pick posture, evaluate, audit. Raises only when it cannot decide."""
        started = time.perf_counter()
        now = self._clock()
        record = device.device if device is not None else None
        state = self._reads.decision_state(user_id, record.id if record is not None else None)
        user, stored, failures = state.user, state.posture, state.rule_failures
        posture: Posture | None = None
        age: timedelta | None = None
        if stored is not None:
            posture = stored.posture
            age = max(now - stored.received_at, timedelta(0))
        fresh, snapshot_use = self._snapshot(record, snapshot, posture, now)
        if fresh is not None:
            posture = fresh
            age = max(now - fresh.collected_at, timedelta(0))
        decision = evaluate(
            EvaluationInput(
                user=user,
                device=record,
                posture=posture,
                now=now,
                posture_age=age,
                app=app,
                rule_failures=failures,
            ),
            self._core.policies.current(),
        )
        result = GateResult(
            decision=decision,
            refusal=None,
            device_id=record.id if record is not None else None,
            evaluated_at=now,
            posture_collected_at=posture.collected_at if posture is not None else None,
            snapshot=snapshot_use,
            device_label=device_label(record, posture),
        )
        self.audit(
            result, user_id=user_id, app=app, channel=channel, caller=caller, started=started
        )
        return result

    def refuse(
        self,
        reason: Reason,
        *,
        user_id: str,
        app: str | None,
        channel: str,
        caller: str,
        device_id: str | None = None,
    ) -> GateResult:
        """A refusal before the engine (bad proof): audited like any decision."""
        result = GateResult(
            decision=None, refusal=reason, device_id=device_id, evaluated_at=self._clock()
        )
        try:
            self.audit(result, user_id=user_id, app=app, channel=channel, caller=caller)
        except Exception:  # the refusal stands even if it cannot be recorded
            log.exception("could not audit a refused access request")
        return result

    def audit(
        self,
        result: GateResult,
        *,
        user_id: str,
        app: str | None,
        channel: str,
        caller: str,
        started: float | None = None,
    ) -> None:
        detail: dict[str, Any] = {
            "user_id": user_id,
            "app": app,
            "channel": channel,
            "caller": caller,
            "device_id": result.device_id,
        }
        if result.snapshot is not None:
            detail["snapshot"] = result.snapshot
        if result.decision is not None:
            d = result.decision
            detail.update(
                reasons=[r.code.value for r in d.reasons],
                rules=[f"{r.policy_id}/{r.rule_id}" for r in d.reasons if r.rule_id],
                policy_ids=list(d.policy_ids),
                report_only=[r.code.value for r in d.report_only],
                posture_age_s=d.posture_age.total_seconds() if d.posture_age else None,
                quarantine=d.quarantine,
            )
        elif result.refusal is not None:
            detail.update(reasons=[result.refusal.code])
        entry = (
            f"user:{user_id}",
            "access.decision",
            result.device_id or f"user:{user_id}",
            result.outcome,
            detail,
        )
        if self._audit_writer is not None:  # waits until durable; raises -> the caller blocks
            self._audit_writer.record(*entry)
        else:
            with self._core.storage.unit_of_work() as uow:
                uow.audit.record(*entry)
        DECISIONS.labels(channel=channel, outcome=result.outcome).inc()
        log_decision(
            result.outcome,
            channel=channel,
            app=app,
            device_id=result.device_id,
            reasons=detail.get("reasons", []),
            rules=detail.get("rules", []),
            policy_ids=detail.get("policy_ids", []),
            posture_age_s=detail.get("posture_age_s"),
            started=started,
        )

    def snapshot_posture(
        self,
        record: Any,
        snapshot: Mapping[str, Any] | None,
        stored: Posture | None,
        now: datetime,
    ) -> Posture | None:
        """The posture to decide on from a signed ``snapshot`` over the ``stored`` posture;
        ``None`` when the snapshot is absent, unreadable, stale or older than ``stored``."""
        return self._snapshot(record, snapshot, stored, now)[0]

    def _snapshot(
        self,
        record: Any,
        snapshot: Mapping[str, Any] | None,
        stored: Posture | None,
        now: datetime,
    ) -> tuple[Posture | None, str | None]:
        if record is None or snapshot is None:
            return None, None
        try:
            fmt, report = report_envelope(snapshot)
            posture = self._core.checkin.posture_of(record, report, fmt, now)
        except MdmError as exc:
            log.info("refusing an unreadable posture snapshot from %s: %s", record.id, exc)
            return None, "refused"
        if now - posture.collected_at > self._snapshot_max_age:
            return None, "stale"
        if stored is not None and posture.collected_at <= stored.collected_at:
            return None, "older"
        merged = overlay_snapshot(stored, posture)
        profile = self._core.privacy.for_ownership(record.ownership)
        return profile.apply(merged), "used"  # carried fields obey today's profile too


def _reasons(decision: EngineDecision) -> tuple[Reason, ...]:
    return tuple(
        Reason(
            code=r.code.value,
            message=r.message,
            policy_id=r.policy_id,
            severity=r.severity.value if r.severity else None,
            remediation=r.remediation,
        )
        for r in decision.reasons
    )


def _remediation(decision: EngineDecision) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for r in decision.reasons:
        if r.remediation:
            seen.setdefault(r.remediation, None)
    return tuple(seen)


def _proof_reason(exc: Exception) -> Reason:
    if isinstance(exc, ProofError):
        return Reason(
            code=exc.reason,
            message="This device could not prove who it is: " + str(exc),
            severity="critical",
        )
    return Reason(code="device_proof_invalid", message="This device could not prove who it is.")


class PolicyDeviceGate:
    """:class:`~posture_gateway.login.device_check.DeviceGate` on the MDM core and the engine."""

    def __init__(self, evaluator: PostureEvaluator, *, audience: str) -> None:
        if evaluator is None or not audience:
            raise ValueError("PolicyDeviceGate needs an evaluator and an audience")
        self._evaluator = evaluator
        self._audience = audience

    def check(
        self,
        *,
        user_id: str,
        client_id: str,
        requested_scopes: frozenset[str],
        proof: str | None,
        nonce: str,
        client_cert_pem: str | None,
    ) -> LoginVerdict:
        try:
            device, snapshot = self._evaluator.prove(
                proof=proof, audience=self._audience, nonce=nonce, client_cert_pem=client_cert_pem
            )
        except (ProofError, ValueError) as exc:
            reason = _proof_reason(exc)
            self._evaluator.refuse(
                reason, user_id=user_id, app=client_id, channel="oidc", caller=client_id
            )
            return LoginVerdict(
                outcome="block",
                reasons=(reason,),
                remediation=(
                    "Make sure the Posture agent is running on this device and that the device "
                    "is enrolled, then check again.",
                ),
                acr="",
                amr=(),
            )
        try:
            result = self._evaluator.run(
                user_id=user_id,
                device=device,
                snapshot=snapshot,
                app=client_id,
                channel="oidc",
                caller=client_id,
            )
        except Exception:  # fail closed: store, policy set or audit unavailable
            log.exception("device gate could not decide; blocking")
            return blocked(
                "decision_unavailable",
                "The gateway could not check your device right now, so access is refused.",
                "Try again in a few minutes; if it persists, contact your IT help desk.",
            )
        return self._verdict(result, requested_scopes)

    @staticmethod
    def _verdict(result: GateResult, requested: frozenset[str]) -> LoginVerdict:
        decision = result.decision
        assert decision is not None
        outcome = decision.outcome
        if outcome is Outcome.BLOCK:
            return LoginVerdict(
                outcome="block",
                reasons=_reasons(decision),
                remediation=_remediation(decision),
                acr="",
                amr=(),
                device=result.device_label,
            )
        granted: frozenset[str] | None = None
        allowed = decision.restrictions.allowed_scopes
        if outcome is Outcome.RESTRICT and allowed is not None:
            granted = frozenset(allowed) & requested
        deadlines = [r.escalates_at for r in decision.reasons if r.escalates_at is not None]
        claims: dict[str, Any] = {
            "device_id": result.device_id,
            "posture_outcome": outcome.value,
            "compliance_state": "compliant" if outcome is Outcome.ALLOW else "noncompliant",
            "posture_evaluated_at": int(result.evaluated_at.timestamp()),
            "posture_policy_ids": list(decision.evaluated_policy_ids),
        }
        if decision.posture_age is not None:
            claims["posture_age_s"] = int(decision.posture_age.total_seconds())
        return LoginVerdict(
            outcome=outcome.value,  # type: ignore[arg-type]  # Outcome values are the literals
            claims=claims,
            granted_scopes=granted,
            reasons=_reasons(decision),
            remediation=_remediation(decision),
            acr=ACR_MANAGED_DEVICE,
            amr=("hwk",),
            deadline=min(deadlines) if deadlines else None,
            device=result.device_label,
        )


class PolicyDeviceBinding:
    """:class:`~posture_gateway.oidc.binding.DeviceBinding` on the same pipeline: a refresh is
    decided like a login (current posture and policies, audited), on the bound device."""

    def __init__(self, evaluator: PostureEvaluator, core: MdmCore) -> None:
        if evaluator is None or core is None:
            raise ValueError("PolicyDeviceBinding needs an evaluator and the MDM core")
        self._evaluator = evaluator
        self._core = core

    def recheck(
        self, *, subject: GrantSubject, client_id: str, requested_scopes: frozenset[str]
    ) -> LoginVerdict:
        record = None
        if subject.device_id is not None:
            with self._core.storage.unit_of_work() as uow:
                record = uow.devices.get(subject.device_id)
        # No device (or an unknown one) reaches the engine as such: block, audited.
        device = (
            AuthenticatedDevice(
                device=record,
                cert_serial=record.cert_serial or "",
                key_thumbprint=record.key_thumbprint or "",
            )
            if record is not None
            else None
        )
        result = self._evaluator.run(
            user_id=subject.user_id,
            device=device,
            snapshot=None,
            app=client_id,
            channel=REFRESH_CHANNEL,
            caller=client_id,
        )
        return PolicyDeviceGate._verdict(result, requested_scopes)

    def still_bound(self, subject: GrantSubject) -> bool:
        if subject.device_id is None:
            return False
        with self._core.storage.unit_of_work() as uow:
            device = uow.devices.get(subject.device_id)
            user = uow.directory_users.get(subject.user_id)
        return (
            device is not None
            and device.user_id == subject.user_id  # identifiers, not secrets
            and device.status is DeviceStatus.ACTIVE
            and user is not None
            and user.active
        )


class PolicyDecisionService:
    """:class:`~posture_gateway.access.decision.DecisionService` on the same pipeline.

    Without a device proof or certificate the device is unknown: block. A ``device_id`` hint
    that disagrees with the proven device is a block (``device_mismatch``).
    """

    def __init__(self, evaluator: PostureEvaluator, nonces: NonceStore) -> None:
        if evaluator is None or nonces is None:
            raise ValueError("PolicyDecisionService needs an evaluator and a nonce store")
        self._evaluator = evaluator
        self._nonces = nonces

    def _refuse(self, request: AccessRequest, reason: Reason) -> Decision:
        """Audit a refusal made before the engine and answer ``block`` with it."""
        self._evaluator.refuse(
            reason,
            user_id=request.user_id,
            app=request.application,
            channel=request.channel,
            caller=request.caller,
            device_id=request.device_id,
        )
        return Decision(
            outcome="block",
            reasons=(reason,),
            policy_ids=(),
            evaluated_at=_utcnow(),
            device_id=request.device_id,
        )

    def _consume_api_nonce(self, request: AccessRequest, nonce: str) -> bool:
        if not request.proof_audience:
            return False
        purpose = nonce_purpose(
            NonceKind.API_DECISION, audience=request.proof_audience, caller=request.caller
        )
        return self._nonces.consume(nonce, purpose=purpose)

    def decide(self, request: AccessRequest) -> Decision:
        nonce: str | None = None
        if request.device_proof:
            # A proof for the API is bound to a nonce the caller obtained from this gateway.
            # The claim is read unverified here only to spend it: the verifier then checks the
            # signature and compares the signed nonce with it (constant time). A nonce we did
            # not issue, or one already spent, refuses the proof.
            # The nonce must have been issued for THIS purpose: the API, this proof audience and
            # this caller (POST /api/v1/nonce); a browser-login nonce is unknown here and is
            # not spent.
            nonce = _proof_nonce(request.device_proof)
            if nonce is None or not self._consume_api_nonce(request, nonce):
                return self._refuse(
                    request,
                    Reason(
                        code="nonce_invalid",
                        message="The device proof is not bound to a live nonce from this gateway.",
                        severity="critical",
                    ),
                )
        try:
            device, snapshot = self._evaluator.prove(
                proof=request.device_proof,
                audience=request.proof_audience or "",
                nonce=nonce,
                client_cert_pem=request.client_cert_pem,
            )
        except (ProofError, ValueError) as exc:
            return self._refuse(request, _proof_reason(exc))
        if (
            device is not None
            and request.device_id is not None
            and not hmac.compare_digest(device.device.id, request.device_id)
        ):
            return self._refuse(
                request,
                Reason(
                    code="device_mismatch",
                    message="The proven device is not the device the request names.",
                    severity="critical",
                ),
            )
        result = self._evaluator.run(
            user_id=request.user_id,
            device=device,
            snapshot=snapshot,
            app=request.application,
            channel=request.channel,
            caller=request.caller,
        )
        decision = result.decision
        assert decision is not None
        return Decision(
            outcome=decision.outcome.value,
            reasons=_reasons(decision),
            policy_ids=decision.policy_ids,
            evaluated_at=result.evaluated_at,
            posture_age_s=decision.posture_age.total_seconds()
            if decision.posture_age is not None
            else None,
            device_id=result.device_id,
            remediation=_remediation(decision),
        )


def _proof_nonce(token: str) -> str | None:
    """The nonce claim of a login proof, read WITHOUT verification (see the caller)."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    nonce = claims.get("nonce")
    return nonce if isinstance(nonce, str) else None


def init_app(app: Any) -> None:
    """Wire the real gate and decision service into the OIDC provider and the integrations.

    Replaces the fail-closed placeholders (``UnconfiguredDeviceGate``,
    ``UnconfiguredDecisionService``, ``UnconfiguredUserDirectory``).
    """

    core = app.extensions["posture"].core
    provider = app.extensions[OIDC_KEY]
    model = read_model_of(core)
    evaluator = PostureEvaluator(core, reads=model.reads, audit_writer=model.audit)
    provider.gate = PolicyDeviceGate(evaluator, audience=provider.issuer.issuer)
    provider.binding = PolicyDeviceBinding(evaluator, core)  # refresh + token lookups
    state = integrations(app)
    state.decision_service = PolicyDecisionService(evaluator, provider.nonces)
    state.user_directory = DirectoryUserResolver.from_settings(core.storage, state.settings)
