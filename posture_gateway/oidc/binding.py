"""What a token bound to a device at login needs from the device plane afterwards.

A login binds its tokens to the device it proved (``GrantSubject.device_id``). After the login
the OpenID provider asks a :class:`DeviceBinding`:

- at every **refresh**, :meth:`DeviceBinding.recheck`: the same device decision as a login
  (the device's current posture, the policies in force, audited, channel ``oidc_refresh``),
  with the device taken from the token instead of a new proof. ``block`` ends the token
  family (``invalid_grant``); ``restrict`` narrows the scopes; the refreshed ID token carries
  only the posture claims this decision produced.
- at every **token lookup** (introspection, userinfo, posture API bearer, code exchange),
  :meth:`DeviceBinding.still_bound`, defence in depth behind the revocation done in the
  quarantine / revocation / retirement / wipe transaction: a token whose device is unknown,
  another user's, or not ``active`` (quarantined, pending verification, retired, wiped), or
  whose user is unknown or disabled, is inactive even if a revocation was missed.

Machine tokens (the posture API's client-credentials grant, ``GrantSubject.machine``) have no
device and skip :meth:`still_bound`; every other token without a device is inactive.

The implementation is :class:`posture_gateway.access.device_gate.PolicyDeviceBinding` (on the
one access evaluator), given to the provider when it is built: there is no placeholder.
"""

from __future__ import annotations

from typing import Protocol

from mdm_core.access.decision import Decision
from mdm_core.access.request import Channel
from posture_gateway.oidc.grants import GrantSubject

__all__ = ["DeviceBinding", "REFRESH_CHANNEL"]

#: The audit channel of the refresh decision.
REFRESH_CHANNEL: Channel = "oidc_refresh"


class DeviceBinding(Protocol):
    """The device plane as seen by tokens already issued."""

    def recheck(
        self, *, subject: GrantSubject, client_id: str, requested_scopes: frozenset[str]
    ) -> Decision:
        """The device decision for a refresh of ``subject``'s token by ``client_id``: the
        login pipeline on the bound device, audited. A missing or unknown device is a block
        with a reason. Raises only when no decision can be made (store down): the caller
        answers "temporarily unavailable" and spends nothing (a decision that could not be
        made, ``Decision.unavailable``, is raised too)."""
        ...

    def still_bound(self, subject: GrantSubject) -> bool:
        """Whether ``subject``'s device may still use its tokens: the subject names a device
        (``False`` when it names none), the device exists, is the subject's, is ``active``;
        the user exists and is active. Raises on a storage error (the caller fails closed)."""
        ...
