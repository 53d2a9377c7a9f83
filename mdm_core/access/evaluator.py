"""The ONE access evaluator: :class:`AccessEvaluator`, request in, :class:`Decision` out.

Every channel asks it: the browser login (``oidc``), the token refresh (``oidc_refresh``),
Microsoft Entra EAM, the posture decision API, the Okta token hook, and what-if. Inside, once:

1. **Prove the device**, in band and cryptographically: a device certificate forwarded by a
   trusted mTLS proxy (checked against our CA and the device's current certificate), or a
   login proof JWT signed by the enrolled device key over its nonce and our audience (parsed
   once: :meth:`mdm_core.device.proof.DeviceProofVerifier.verify_login_proof`), or a device
   the gateway already trusts (``bound_device_id``: a refresh token's device, a what-if's).
   A proof that fails is a ``block`` with the proof's reason; no proof at all is an unknown
   device (the engine blocks it).
2. **Read the state** through :class:`~mdm_core.access.state.AccessStateReader` (the narrow
   read protocol: the SQL stores, or a cached read model).
3. **Choose the posture**: a signed snapshot carried in the login proof when it is readable,
   fresh and newer than the stored report, laid over the stored posture, else the stored
   posture with its age by the server's clock. The snapshot has the shape of a check-in body
   and is read by the check-in's own code path (format, normalisation, privacy profile); a
   snapshot that cannot be read is refused (the stored posture decides) and never stored.
   The decision says which happened (``snapshot``: ``used``, ``refused``, ``stale``,
   ``older``).
4. **Evaluate** with the pure engine against the policy set in force
   (:func:`mdm_core.access.evaluate.evaluate_state`).
5. **Audit** (:class:`~mdm_core.access.audit.DecisionAudit`): one record per decision. No
   audit, no access: a decision that cannot be recorded is a ``block``.

Any exception on the way is a ``block`` (``decision_unavailable``, ``unavailable=True``):
:meth:`AccessEvaluator.decide` never raises. :meth:`AccessEvaluator.explain` (what-if) runs
steps 1-4, the identical code, and returns the decision with the state it was made on; it
records nothing, because nobody gets access.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import Counter

from mdm_core.access.audit import DecisionAudit
from mdm_core.access.decision import Decision, Reason, block, device_label, from_engine
from mdm_core.access.evaluate import (
    ChosenPosture,
    Engine,
    evaluate_state,
    snapshot_choice,
    stored_posture,
)
from mdm_core.access.request import AccessRequest
from mdm_core.access.state import AccessState, AccessStateReader
from mdm_core.device.ca import CertificateIdentity
from mdm_core.device.proof import VerifiedLoginProof
from mdm_core.domain.errors import MdmError, NonceMismatch, ProofError, RevokedCertificate
from mdm_core.domain.model import DeviceRecord
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.engine import evaluate
from mdm_core.policy.model import Decision as EngineDecision
from mdm_core.posture.model import Posture

__all__ = [
    "AccessDecisions",
    "AccessEvaluator",
    "DECISIONS",
    "DecisionObserver",
    "DeviceCertificates",
    "Explanation",
    "LoginProofs",
    "PolicySource",
    "SNAPSHOT_MAX_AGE",
    "SnapshotReader",
    "UNAVAILABLE_MESSAGE",
]

log = logging.getLogger(__name__)

#: A signed posture snapshot in a login proof counts as fresh posture up to this age.
SNAPSHOT_MAX_AGE = timedelta(minutes=5)

DECISIONS = Counter(
    "posture_access_decisions_total",
    "Access decisions made by the gateway, by channel and outcome.",
    ["channel", "outcome"],
)

UNAVAILABLE_MESSAGE = "The gateway could not check your device right now, so access is refused."
_UNAVAILABLE_FIX = "Try again in a few minutes; if it persists, contact your IT help desk."
_PROOF_FIX = (
    "Make sure the Posture agent is running on this device and that the device is enrolled, "
    "then check again."
)

#: Called after every live decision is recorded: ``(request, decision, started)`` where
#: ``started`` is the ``time.perf_counter()`` when the request came in (log lines, latency).
DecisionObserver = Callable[[AccessRequest, Decision, float], None]


class AccessDecisions(Protocol):
    """What a front end holds: the evaluator (or, in a front end's own tests, a double)."""

    def decide(self, request: AccessRequest) -> Decision:
        """The audited decision for ``request``; a bad proof, an unknown device or stale
        posture is a ``block`` with reasons, not an exception."""
        ...


class LoginProofs(Protocol):
    """Verifies device login proofs (:class:`mdm_core.device.proof.DeviceProofVerifier`)."""

    def verify_login_proof(
        self, token: str, *, audience: str, nonce: str | Callable[[str], bool]
    ) -> VerifiedLoginProof:
        """The verified proof; raises a :class:`ProofError` leaf when it does not hold."""
        ...


class DeviceCertificates(Protocol):
    """Verifies device certificates (:class:`mdm_core.device.ca.CertificateAuthority`)."""

    def verify_device_certificate(self, certificate: str) -> CertificateIdentity:
        """Whom the certificate speaks for; raises a :class:`ProofError` leaf otherwise."""
        ...


class SnapshotReader(Protocol):
    """Reads a posture snapshot the check-in's way."""

    def read(self, device: DeviceRecord, snapshot: Mapping[str, Any], now: datetime) -> Posture:
        """The snapshot (a check-in body ``{"format", "report"}``) as the device's posture;
        raises :class:`MdmError` when it cannot be read. Writes nothing."""
        ...

    def restrict(self, device: DeviceRecord, posture: Posture) -> Posture:
        """``posture`` filtered by the device's privacy profile in force today."""
        ...


class PolicySource(Protocol):
    """The policy set in force (:class:`mdm_core.policy.repository.PolicyRepository`)."""

    def current(self) -> CompiledPolicySet:
        """The set in force; raises when there is none (the evaluator then blocks)."""
        ...


@dataclass(frozen=True, slots=True)
class Explanation:
    """A decision and what it was made on (``None`` where the run stopped before)."""

    request: AccessRequest
    decision: Decision
    state: AccessState | None = None
    chosen: ChosenPosture | None = None
    engine: EngineDecision | None = None
    policy_set: str | None = None
    now: datetime | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _proof_reason(exc: Exception) -> Reason:
    if isinstance(exc, ProofError):
        return Reason(
            code=exc.reason,
            message="This device could not prove who it is: " + str(exc),
            severity="critical",
        )
    return Reason(code="device_proof_invalid", message="This device could not prove who it is.")


_NONCE_INVALID = Reason(
    code="nonce_invalid",
    message="The device proof is not bound to a live nonce from this gateway.",
    severity="critical",
)
_DEVICE_MISMATCH = Reason(
    code="device_mismatch",
    message="The proven device is not the device the request names.",
    severity="critical",
)


class _Refused(Exception):
    """A refusal before the engine, with its reason."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.code)
        self.reason = reason


class AccessEvaluator:
    """The one evaluation path (see the module docstring). Dependencies are injected, each
    the narrowest protocol that does the job; none may be ``None``."""

    def __init__(
        self,
        *,
        state: AccessStateReader,
        proofs: LoginProofs,
        certificates: DeviceCertificates,
        snapshots: SnapshotReader,
        policies: PolicySource,
        audit: DecisionAudit,
        clock: Callable[[], datetime] = _utcnow,
        snapshot_max_age: timedelta = SNAPSHOT_MAX_AGE,
        observers: Sequence[DecisionObserver] = (),
        engine: Engine = evaluate,
    ) -> None:
        for name, value in (
            ("state", state),
            ("proofs", proofs),
            ("certificates", certificates),
            ("snapshots", snapshots),
            ("policies", policies),
            ("audit", audit),
        ):
            if value is None:
                raise ValueError(f"AccessEvaluator needs {name}")
        self._state = state
        self._proofs = proofs
        self._certificates = certificates
        self._snapshots = snapshots
        self._policies = policies
        self._audit = audit
        self._clock = clock
        self._snapshot_max_age = snapshot_max_age
        self._observers = tuple(observers)
        self._engine = engine

    # --- the two entry points ---------------------------------------------------------------

    def decide(self, request: AccessRequest) -> Decision:
        """The live decision for ``request``, audited. Never raises: every failure is a
        ``block`` (one that could not be made at all says ``unavailable``)."""
        started = time.perf_counter()
        decision = self._run(request).decision
        try:
            self._audit.record(request, decision)
        except Exception:  # no audit, no access
            log.exception("could not audit an access decision; blocking")
            if decision.outcome != "block":
                decision = self._unavailable(decision.evaluated_at, decision.device_id)
        DECISIONS.labels(channel=request.channel, outcome=decision.outcome).inc()
        for observe in self._observers:
            try:
                observe(request, decision, started)
            except Exception:  # an observer never changes the decision
                log.exception("decision observer failed")
        return decision

    def explain(self, request: AccessRequest) -> Explanation:
        """What-if: the same run as :meth:`decide` without the audit record (nobody gets
        access), with the state the decision was made on."""
        return self._run(request)

    # --- the steps ------------------------------------------------------------------------------

    def _run(self, request: AccessRequest) -> Explanation:
        now = request.requested_at or self._clock()
        try:
            device, carried = self._prove(request)
        except _Refused as refused:
            decision = block(
                refused.reason.code,
                refused.reason.message,
                *((_PROOF_FIX,) if refused.reason is not _DEVICE_MISMATCH else ()),
                now=now,
                device_id=request.device_id,
                severity=refused.reason.severity,
            )
            return Explanation(request, decision, now=now)
        except Exception:  # fail closed: a store or the CA could not be read
            log.exception("could not prove the device; blocking")
            return Explanation(request, self._unavailable(now, request.device_id), now=now)
        try:
            state = self._state.access_state(request.user_id, device)
            chosen = self.choose_posture(
                state, carried if carried is not None else request.snapshot, now
            )
            policies = self._policies.current()
            engine = evaluate_state(
                state,
                chosen,
                app=request.application,
                now=now,
                policies=policies,
                engine=self._engine,
            )
        except Exception:  # fail closed: store or policy set unavailable
            log.exception("access decision could not be made; blocking")
            device_id = device.id if device is not None else None
            return Explanation(request, self._unavailable(now, device_id), now=now)
        decision = from_engine(
            engine,
            device_id=device.id if device is not None else None,
            device=device_label(device, chosen.posture),
            snapshot=chosen.snapshot,
        )
        return Explanation(request, decision, state, chosen, engine, policies.fingerprint, now)

    def _prove(
        self, request: AccessRequest
    ) -> tuple[DeviceRecord | None, Mapping[str, Any] | None]:
        """Step 1: the proven device and the snapshot its proof carried. Raises
        :class:`_Refused` for a proof that does not hold."""
        device: DeviceRecord | None = None
        carried: Mapping[str, Any] | None = None
        try:
            if request.client_cert_pem:
                device = self._certified(request.client_cert_pem)
            elif request.device_proof:
                verified = self._verify_proof(request)
                device, carried = verified.device.device, verified.posture
            elif request.bound_device_id:
                device = self._state.device(request.bound_device_id)
        except (ProofError, ValueError) as exc:
            raise _Refused(_proof_reason(exc)) from exc
        if (
            device is not None
            and request.device_id is not None
            and not hmac.compare_digest(device.id.encode(), request.device_id.encode())
        ):
            raise _Refused(_DEVICE_MISMATCH)
        return device, carried

    def _certified(self, pem: str) -> DeviceRecord:
        identity = self._certificates.verify_device_certificate(pem)
        record = self._state.device(identity.device_id)
        if record is None or not hmac.compare_digest(
            (record.cert_serial or "").encode(), identity.serial.encode()
        ):
            raise RevokedCertificate("certificate is not the device's current certificate")
        return record

    def _verify_proof(self, request: AccessRequest) -> VerifiedLoginProof:
        token = request.device_proof or ""
        if request.proof_nonce:
            return self._proofs.verify_login_proof(
                token, audience=request.proof_audience or "", nonce=request.proof_nonce
            )
        if request.spend_nonce is None:
            raise ValueError("a login proof needs the nonce it was bound to")
        if not request.proof_audience:
            raise _Refused(_NONCE_INVALID)
        try:
            return self._proofs.verify_login_proof(
                token, audience=request.proof_audience, nonce=request.spend_nonce
            )
        except NonceMismatch as exc:
            raise _Refused(_NONCE_INVALID) from exc

    def choose_posture(
        self, state: AccessState, snapshot: Mapping[str, Any] | None, now: datetime
    ) -> ChosenPosture:
        """Step 3: the ``snapshot`` (a check-in body) over the stored posture of ``state`` when
        it is readable, fresh and newer (``snapshot="used"``, privacy-filtered), else the
        stored posture (``refused``, ``stale``, ``older``; ``None``: no snapshot)."""
        stored = stored_posture(state, now)
        if state.device is None or snapshot is None:
            return stored
        try:
            fresh = self._snapshots.read(state.device, snapshot, now)
        except MdmError as exc:
            log.info("refusing an unreadable posture snapshot from %s: %s", state.device.id, exc)
            return dataclasses.replace(stored, snapshot="refused")
        chosen = snapshot_choice(stored, fresh, now=now, max_age=self._snapshot_max_age)
        if chosen.snapshot == "used" and chosen.posture is not None:
            # Carried fields obey today's privacy profile too.
            restricted = self._snapshots.restrict(state.device, chosen.posture)
            chosen = dataclasses.replace(chosen, posture=restricted)
        return chosen

    @staticmethod
    def _unavailable(now: datetime, device_id: str | None) -> Decision:
        return block(
            "decision_unavailable",
            UNAVAILABLE_MESSAGE,
            _UNAVAILABLE_FIX,
            now=now,
            device_id=device_id,
            unavailable=True,
        )
