"""The seam between a login and the device decision: :class:`DeviceGate` and its verdict.

The OIDC login flow (``posture_gateway/oidc/login.py``) knows who the user is and which client
asks for which scopes; after the device-check page it holds a device proof (or none) and the
single-use nonce the proof must be bound to. It asks a :class:`DeviceGate` for a
:class:`LoginVerdict` and acts on the outcome:

| outcome  | what the login flow does |
|----------|--------------------------|
| allow    | issues the code; ID token carries ``verdict.claims`` and ``acr``/``amr`` |
| warn     | shows the notice (``reasons``, ``remediation``, deadline) then issues the code |
| restrict | issues the code with ``granted_scopes`` (narrowed) |
| block    | issues nothing; shows the remediation page with a "check again" button |

The real gate (verify the proof, check device ownership, evaluate policy, audit) is composed
elsewhere; until one is configured :class:`UnconfiguredDeviceGate` blocks every login (fail
closed). A gate that raises is treated as ``block`` by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

__all__ = [
    "Outcome",
    "OUTCOMES",
    "Reason",
    "LoginVerdict",
    "DeviceGate",
    "UnconfiguredDeviceGate",
    "ACR_MANAGED_DEVICE",
    "blocked",
]

Outcome = Literal["allow", "warn", "restrict", "block"]
OUTCOMES: tuple[Outcome, ...] = ("allow", "warn", "restrict", "block")

# The acr value our ID tokens carry when a compliant managed device was proven at login.
ACR_MANAGED_DEVICE = "urn:posture-gateway:acr:managed-device"


@dataclass(frozen=True)
class Reason:
    """One machine-readable reason behind a verdict, with the plain-words text users see.

    ``code`` is stable (e.g. ``encryption_off``, ``posture_stale``, ``proof_replayed``);
    ``message`` says what is wrong in plain words; ``policy_id`` names the rule that fired;
    ``remediation`` is that rule's own fix (from the policy file), when it has one.
    """

    code: str
    message: str
    policy_id: str | None = None
    severity: str | None = None
    remediation: str | None = None


@dataclass(frozen=True)
class LoginVerdict:
    """What the device gate decided for this login.

    ``claims``: posture claims for the ID token (device id, outcome, compliance state,
    posture evaluated-at, policy ids); keys must not be reserved JWT/OIDC claims.
    ``granted_scopes``: None = as requested; ``restrict`` narrows (never widens: the flow
    intersects it with what was requested). ``deadline``: for ``warn``, when it becomes worse.
    ``device``: how the pages name the device that was checked (platform, model, short id).
    """

    outcome: Outcome
    claims: Mapping[str, Any] = field(default_factory=dict)
    granted_scopes: frozenset[str] | None = None
    reasons: tuple[Reason, ...] = ()
    remediation: tuple[str, ...] = ()
    acr: str = ACR_MANAGED_DEVICE
    amr: tuple[str, ...] = ("hwk",)  # the device key was proven; the flow adds the user's amr
    deadline: datetime | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")


def blocked(code: str, message: str, *remediation: str) -> LoginVerdict:
    """A block verdict with one reason (for gates and for the flow's own refusals)."""
    return LoginVerdict(
        outcome="block",
        reasons=(Reason(code=code, message=message),),
        remediation=tuple(remediation),
        acr="",
        amr=(),
    )


class DeviceGate(Protocol):
    """Decides whether this user may log in to this client from the device that proved itself."""

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
        """Return the verdict. Never raises for a bad proof or device: that is a block with a
        reason. ``proof`` is the device's login proof JWT (None when the agent gave none),
        bound to ``nonce`` (already consumed by the caller: single use) and to the gateway's
        audience; ``client_cert_pem`` is a device certificate forwarded by an mTLS proxy."""
        ...


class UnconfiguredDeviceGate:
    """The gate in force until a real one is configured: every login is blocked."""

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
        return blocked(
            "device_gate_not_configured",
            "This gateway cannot check devices yet, so no one can sign in through it.",
            "Ask your administrator to finish the gateway set-up.",
        )
