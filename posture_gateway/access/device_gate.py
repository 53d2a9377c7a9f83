"""The one access evaluator wired into the gateway's front ends, and the refresh binding.

:mod:`posture_gateway.wiring` builds the MDM core's
:class:`~mdm_core.access.evaluator.AccessEvaluator` once
(:func:`mdm_core.access.wiring.evaluator_for`,
with :func:`log_observer`, the decision log line) and hands the SAME evaluator to every channel
before any blueprint is registered: the browser login (``provider.gate``), the token refresh
(:class:`PolicyDeviceBinding`), Entra EAM, the posture decision API and the Okta hook
(``integrations.evaluator``), and what-if (:func:`evaluator`, kept by :func:`install`). No
channel decides on its own.

A token refresh is decided like a login (channel ``oidc_refresh``) on the device the token was
bound to at login: the refresh token stands in for the proof.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, current_app

from mdm_core.access.decision import Decision
from mdm_core.access.evaluator import AccessDecisions, AccessEvaluator
from mdm_core.access.request import AccessRequest
from mdm_core.domain.model import DeviceStatus
from mdm_core.storage.uow import Storage
from posture_gateway.access.nonces import NonceKind, NonceStore, nonce_purpose
from posture_gateway.observability.decisions import log_decision
from posture_gateway.oidc.binding import REFRESH_CHANNEL
from posture_gateway.oidc.grants import GrantSubject

__all__ = [
    "EXTENSION_KEY",
    "DecisionUnavailable",
    "PolicyDeviceBinding",
    "api_nonce_spender",
    "evaluator",
    "install",
    "log_observer",
]

log = logging.getLogger(__name__)

#: Where the app's evaluator lives in ``app.extensions``.
EXTENSION_KEY = "posture.access"


class DecisionUnavailable(RuntimeError):
    """No decision could be made (store, policy set or audit down): retry, spend nothing."""


def log_observer(request: AccessRequest, decision: Decision, started: float) -> None:
    """The ``posture.decision`` log line of a live decision."""
    log_decision(
        decision.outcome,
        channel=request.channel,
        app=request.application,
        device_id=decision.device_id,
        reasons=[r.code for r in decision.reasons],
        rules=[f"{r.policy_id}/{r.rule_id}" for r in decision.reasons if r.rule_id],
        policy_ids=list(decision.policy_ids),
        posture_age_s=decision.posture_age_s,
        started=started,
    )


def api_nonce_spender(nonces: NonceStore, *, audience: str, caller: str) -> Callable[[str], bool]:
    """Spends a posture-API nonce: issued for THIS purpose (the API, this proof audience and
    this caller, ``POST /api/v1/nonce``); a browser-login nonce is unknown here."""
    purpose = nonce_purpose(NonceKind.API_DECISION, audience=audience, caller=caller)

    def spend(nonce: str) -> bool:
        return nonces.consume(nonce, purpose=purpose)

    return spend


class PolicyDeviceBinding:
    """:class:`~posture_gateway.oidc.binding.DeviceBinding` on the one evaluator: a refresh is
    decided like a login (current posture and policies, audited), on the bound device."""

    def __init__(self, access: AccessDecisions, storage: Storage) -> None:
        if access is None or storage is None:
            raise ValueError("PolicyDeviceBinding needs the access evaluator and the storage")
        self._access = access
        self._storage = storage

    def recheck(
        self, *, subject: GrantSubject, client_id: str, requested_scopes: frozenset[str]
    ) -> Decision:
        # No device (or an unknown one) reaches the engine as such: block, audited.
        decision = self._access.decide(
            AccessRequest(
                user_id=subject.user_id,
                application=client_id,
                channel=REFRESH_CHANNEL,
                caller=client_id,
                bound_device_id=subject.device_id,
            )
        )
        if decision.unavailable:
            raise DecisionUnavailable("the refresh decision could not be made")
        return decision

    def still_bound(self, subject: GrantSubject) -> bool:
        if subject.device_id is None:
            return False
        with self._storage.unit_of_work() as uow:
            device = uow.devices.get(subject.device_id)
            user = uow.directory_users.get(subject.user_id)
            offboarded = uow.offboarding.blocked(subject.user_id) is not None
        return (
            device is not None
            and device.user_id == subject.user_id  # identifiers, not secrets
            and device.status is DeviceStatus.ACTIVE
            and user is not None
            and user.active
            and not offboarded  # an offboarding block outlives any sync saying "active"
        )


def install(app: Flask, access: AccessEvaluator) -> None:
    """Keep ``access`` as ``app``'s evaluator (what-if reads it with :func:`evaluator`)."""
    app.extensions[EXTENSION_KEY] = access


def evaluator(app: Flask | None = None) -> AccessEvaluator:
    """The app's access evaluator (what-if runs on it)."""
    found = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(found, AccessEvaluator)
    return found
