"""What a login does with the one access :class:`~mdm_core.access.decision.Decision`.

The OIDC login flow (``posture_gateway/oidc/login.py``), its token refresh and Entra EAM ask
the access evaluator (:class:`mdm_core.access.evaluator.AccessEvaluator`, any
:class:`~mdm_core.access.evaluator.AccessDecisions`) and act on the outcome:

| outcome  | what the login flow does |
|----------|--------------------------|
| allow    | issues the code; the ID token carries :func:`decision_claims` and :func:`acr_of` |
| warn     | shows the notice (``reasons``, ``remediation``, ``deadline``) then issues the code |
| restrict | issues the code with :func:`granted_scopes` (narrowed, never widened) |
| block    | issues nothing; shows the remediation page with a "check again" button |

This module translates a decision into those OIDC terms; it decides nothing. With no
evaluator wired every login is blocked (:func:`not_configured`); an evaluator that raises is
treated as ``block`` by the caller.
"""

from __future__ import annotations

from typing import Any

from mdm_core.access.decision import Decision, block

__all__ = [
    "ACR_MANAGED_DEVICE",
    "acr_of",
    "amr_of",
    "blocked",
    "decision_claims",
    "granted_scopes",
    "not_configured",
]

# The acr value our ID tokens carry when a compliant managed device was proven at login.
ACR_MANAGED_DEVICE = "urn:posture-gateway:acr:managed-device"


def blocked(code: str, message: str, *remediation: str) -> Decision:
    """A block with one reason (for the flow's own refusals)."""
    return block(code, message, *remediation)


def not_configured() -> Decision:
    """The answer while no access evaluator is wired: every login is blocked."""
    return blocked(
        "device_gate_not_configured",
        "This gateway cannot check devices yet, so no one can sign in through it.",
        "Ask your administrator to finish the gateway set-up.",
    )


def decision_claims(decision: Decision) -> dict[str, Any]:
    """The posture claims of the ID token for ``decision`` (none for a block): device id,
    outcome, compliance state, when it was decided, the policies evaluated, posture age."""
    if decision.outcome == "block":
        return {}
    claims: dict[str, Any] = {
        "device_id": decision.device_id,
        "posture_outcome": decision.outcome,
        "compliance_state": "compliant" if decision.outcome == "allow" else "noncompliant",
        "posture_evaluated_at": int(decision.evaluated_at.timestamp()),
        "posture_policy_ids": list(decision.evaluated_policy_ids),
    }
    if decision.posture_age_s is not None:
        claims["posture_age_s"] = int(decision.posture_age_s)
    return claims


def granted_scopes(decision: Decision, requested: frozenset[str]) -> frozenset[str] | None:
    """``None``: as requested; ``restrict`` with allowed scopes narrows to those requested."""
    if decision.outcome != "restrict" or decision.allowed_scopes is None:
        return None
    return decision.allowed_scopes & requested


def acr_of(decision: Decision) -> str:
    """The ``acr`` a login on this decision earns (none for a block)."""
    return "" if decision.outcome == "block" else ACR_MANAGED_DEVICE


def amr_of(decision: Decision) -> tuple[str, ...]:
    """The ``amr`` the device adds (``hwk``: its key was proven); the flow adds the user's."""
    return () if decision.outcome == "block" else ("hwk",)
