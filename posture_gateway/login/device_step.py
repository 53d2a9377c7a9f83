"""The device-check step every login front end shares (OIDC login, Entra EAM, the SAML IdP).

A front end knows who the user is and which client asks; it then runs the same two halves:

1. :func:`begin_device_check` issues the single-use nonce (bound to its step and to the
   audience the agent's login proof names) that the front end keeps in its login transaction
   (:mod:`posture_gateway.login.transactions`) and puts on its device-check page, whose script
   asks the local agent (:func:`agent_config`, ``templates/login/_agent_probe.html``) for a
   proof over that nonce;
2. :func:`finish_device_check` checks that the nonce posted back is the transaction's
   (constant time), consumes it (a replay is refused), asks the one access evaluator
   (:class:`~mdm_core.access.evaluator.AccessDecisions`) and returns the decision the front
   end acts on: an evaluator that raises is a ``block``.

The front ends differ only in what they answer (an authorization code, a form_post ID token
to Entra, a SAML assertion) and in their pages; the decision is made here, once.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from mdm_core.access.decision import Decision
from mdm_core.access.evaluator import AccessDecisions
from mdm_core.access.request import AccessRequest, Channel
from posture_gateway.access.nonces import NonceKind, NonceStore, nonce_purpose
from posture_gateway.login.device_check import blocked, not_configured

__all__ = [
    "AGENT_TIMEOUT_MS",
    "DeviceCheckOutcome",
    "agent_config",
    "agent_origin",
    "begin_device_check",
    "finish_device_check",
]

log = logging.getLogger(__name__)

#: How long the device-check page waits for the local agent before it submits without a proof.
AGENT_TIMEOUT_MS = 4000


def agent_origin(port: int) -> str:
    """The loopback origin of the local agent (the page's only ``connect-src``)."""
    return f"http://127.0.0.1:{int(port)}"


def agent_config(*, port: int, nonce: str, audience: str) -> dict[str, Any]:
    """What the device-check page's script needs to ask the agent for a login proof."""
    return {"port": int(port), "nonce": nonce, "aud": audience, "timeout_ms": AGENT_TIMEOUT_MS}


def begin_device_check(
    nonces: NonceStore, ttl: timedelta, *, kind: NonceKind, audience: str
) -> str:
    """A fresh single-use nonce for one device check. Raises when the store fails (the
    caller answers 503: no nonce, no sign-in)."""
    return nonces.issue(ttl, purpose=nonce_purpose(kind, audience=audience))


@dataclass(frozen=True, slots=True)
class DeviceCheckOutcome:
    """The verdict of one device check. ``nonce_problem`` (``nonce_mismatch`` or
    ``nonce_replayed``) says the evaluator was never asked: the posted nonce is not this
    transaction's, or it was already used or expired; ``verdict`` is then a ``block``."""

    verdict: Decision
    nonce_problem: str | None = None


def finish_device_check(
    access: AccessDecisions | None,
    nonces: NonceStore,
    *,
    kind: NonceKind,
    channel: Channel,
    audience: str,
    expected_nonce: object,
    presented_nonce: str,
    user_id: str,
    client_id: str,
    proof: str | None,
    client_cert_pem: str | None,
) -> DeviceCheckOutcome:
    """Check the posted nonce against the transaction's, spend it, and ask the evaluator
    (``channel``: ``oidc``, ``entra_eam``, ...; ``None``: not configured, every check blocks).

    ``expected_nonce`` is what the login transaction holds (anything but a non-empty string
    means no device check was started). Never raises: every failure is a ``block``.
    """
    if (
        not isinstance(expected_nonce, str)
        or not expected_nonce
        or not hmac.compare_digest(presented_nonce.encode(), expected_nonce.encode())
    ):
        return DeviceCheckOutcome(
            blocked("nonce_mismatch", "This device check is no longer valid. Check again."),
            nonce_problem="nonce_mismatch",
        )
    try:
        spent = nonces.consume(expected_nonce, purpose=nonce_purpose(kind, audience=audience))
    except Exception:  # store error: not consumable (fail closed)
        log.exception("device check: nonce store failed")
        spent = False
    if not spent:
        log.warning("device-check nonce replayed or expired (user %s)", user_id)
        return DeviceCheckOutcome(
            blocked(
                "nonce_replayed", "This device check was already used or expired. Check again."
            ),
            nonce_problem="nonce_replayed",
        )
    if access is None:
        return DeviceCheckOutcome(not_configured())
    try:
        verdict = access.decide(
            AccessRequest(
                user_id=user_id,
                application=client_id,
                channel=channel,
                caller=client_id,
                device_proof=proof,
                proof_audience=audience,
                proof_nonce=expected_nonce,  # consumed above: single use
                client_cert_pem=client_cert_pem,
            )
        )
    except Exception:  # a failing evaluator is a block
        log.exception("device check: the access evaluator failed; blocking")
        verdict = blocked(
            "device_check_failed",
            "We could not check your device.",
            "Try again in a moment. If this keeps happening, contact your help desk.",
        )
    return DeviceCheckOutcome(verdict)
