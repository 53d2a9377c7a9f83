"""The protocol-neutral access question and answer: :class:`AccessRequest` -> :class:`Decision`.

Every front end that asks for a posture decision outside the browser login — the posture
decision API for IdPs and proxies, the Okta token inline hook, and later the SAML factor —
translates its protocol into one :class:`AccessRequest` and asks a :class:`DecisionService`.
The service (wired by the composition root onto the policy engine) never sees HTTP, OIDC or
Okta objects. Until one is wired, :class:`UnconfiguredDecisionService` blocks everything:
fail closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from posture_gateway.login.device_check import Outcome, Reason

__all__ = [
    "Channel",
    "AccessRequest",
    "Decision",
    "DecisionService",
    "UnconfiguredDecisionService",
    "block_decision",
]

# Where the question came from (audit, metrics); never changes how it is answered.
Channel = Literal["posture_api", "okta_hook", "entra_eam", "oidc", "oidc_refresh", "saml"]


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """May this user reach this application from this device, now?

    ``user_id`` is our directory user id (already resolved). ``application`` is the OIDC
    ``client_id`` or SAML entity id of the application the user is going to. ``caller`` names
    the authenticated system that asked (API client id, mTLS client name, ``okta``).
    ``device_proof`` is a device login proof JWT when the caller has one; it must be bound to
    ``proof_audience``; ``device_id`` is a hint from the caller that the proof (if any) must
    agree with — without a proof it is an unverified claim the service may only use to
    *narrow* (never to grant).
    """

    user_id: str
    application: str
    channel: Channel
    caller: str
    requested_at: datetime
    device_id: str | None = None
    device_proof: str | None = None
    proof_audience: str | None = None
    client_cert_pem: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer: outcome, why, which policies, how old the posture was, when, which device."""

    outcome: Outcome
    reasons: tuple[Reason, ...]
    policy_ids: tuple[str, ...]
    evaluated_at: datetime
    posture_age_s: float | None = None
    device_id: str | None = None
    remediation: tuple[str, ...] = ()


class DecisionService(Protocol):
    """Evaluates an :class:`AccessRequest` against posture and policy."""

    def decide(self, request: AccessRequest) -> Decision:
        """The decision. A bad proof, an unknown device or stale posture is a ``block`` with
        reasons, not an exception; raises only when it cannot decide at all (store down, no
        valid policy set) — callers then answer ``block`` with ``decision_unavailable``."""
        ...


def block_decision(
    code: str, message: str, *, now: datetime | None = None, device_id: str | None = None
) -> Decision:
    """A ``block`` with one reason (for refusals made before or around the service)."""
    return Decision(
        outcome="block",
        reasons=(Reason(code=code, message=message),),
        policy_ids=(),
        evaluated_at=now or datetime.now(UTC),
        device_id=device_id,
    )


class UnconfiguredDecisionService:
    """The service in force until the engine is wired: every request is blocked."""

    def decide(self, request: AccessRequest) -> Decision:
        return block_decision(
            "decision_service_not_configured",
            "This gateway has no decision service configured, so every request is blocked.",
            device_id=request.device_id,
        )
