"""The protocol-neutral access question: :class:`AccessRequest`.

May this user reach this application from this device, now? Every front end translates its
protocol into one :class:`AccessRequest` and hands it to
:class:`mdm_core.access.evaluator.AccessEvaluator`; nothing in it is HTTP, OIDC or Okta.

How the device is named, strongest first (the evaluator uses the first one present):

- ``client_cert_pem``: a device certificate forwarded by a trusted mTLS proxy;
- ``device_proof``: a device login proof JWT bound to ``proof_audience`` and to a nonce,
  either ``proof_nonce`` (issued and already spent by the caller: the browser login, Entra
  EAM) or, when the caller cannot know it in advance, the proof's own nonce claim spent by
  ``spend_nonce`` once the signature holds (the posture API: the nonce came from
  ``POST /api/v1/nonce``); the proof is parsed once;
- ``bound_device_id``: a device the gateway itself trusts already — the one a token was bound
  to at login (refresh) or the one an administrator names (what-if). Never from a caller.

``device_id`` is a caller's unverified hint: a proven device that disagrees with it is a
``block`` (``device_mismatch``); on its own it proves nothing. ``snapshot`` is a posture
snapshot carried outside the proof (the proof's own snapshot wins). ``requested_at`` is the
time to decide at (what-if and tests); ``None`` is the evaluator's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = ["Channel", "CHANNELS", "AccessRequest"]

# Where the question came from (audit, metrics); never changes how it is answered.
Channel = Literal[
    "posture_api", "okta_hook", "entra_eam", "oidc", "oidc_refresh", "saml", "what_if"
]
CHANNELS: tuple[Channel, ...] = (
    "posture_api",
    "okta_hook",
    "entra_eam",
    "oidc",
    "oidc_refresh",
    "saml",
    "what_if",
)


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One access question (see the module docstring for how the device is named).

    ``user_id`` is our directory user id (already resolved). ``application`` is the OIDC
    ``client_id`` or SAML entity id of the application the user is going to (``None``: no
    application, e.g. a what-if without one). ``caller`` names the authenticated system that
    asked (the client id, the API client, ``okta``, ``admin``).
    """

    user_id: str
    application: str | None
    channel: Channel
    caller: str
    requested_at: datetime | None = None
    device_id: str | None = None
    device_proof: str | None = None
    proof_audience: str | None = None
    proof_nonce: str | None = None
    spend_nonce: Callable[[str], bool] | None = None
    client_cert_pem: str | None = None
    bound_device_id: str | None = None
    snapshot: Mapping[str, Any] | None = None
