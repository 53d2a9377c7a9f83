"""The Shared Signals vocabulary the transmitter speaks: event type URIs, delivery method
URNs, stream statuses. Constants only (the specs' strings, in one place).

- CAEP 1.0 section 3.1 ``session-revoked``, section 3.6 ``device-compliance-change``;
- RISC 1.0 section 2.3 ``account-disabled``;
- SSF 1.0 section 8.1.4 ``verification``, section 8.1.5 ``stream-updated``;
- SSF 1.0 section 7.1 / RFC 8935 / RFC 8936 delivery method URNs.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "CAEP_SESSION_REVOKED",
    "CAEP_DEVICE_COMPLIANCE_CHANGE",
    "RISC_ACCOUNT_DISABLED",
    "SSF_VERIFICATION",
    "SSF_STREAM_UPDATED",
    "EVENTS_SUPPORTED",
    "PUSH",
    "POLL",
    "DELIVERY_METHODS",
    "SET_TYP",
    "SPEC_VERSION",
    "StreamStatus",
    "STATUSES",
]

_CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
_RISC = "https://schemas.openid.net/secevent/risc/event-type/"
_SSF = "https://schemas.openid.net/secevent/ssf/event-type/"

CAEP_SESSION_REVOKED: Final = _CAEP + "session-revoked"
CAEP_DEVICE_COMPLIANCE_CHANGE: Final = _CAEP + "device-compliance-change"
RISC_ACCOUNT_DISABLED: Final = _RISC + "account-disabled"
SSF_VERIFICATION: Final = _SSF + "verification"
SSF_STREAM_UPDATED: Final = _SSF + "stream-updated"

#: What a receiver may request (``events_supported`` of every stream). Verification and
#: stream-updated events are part of the stream protocol and are always delivered.
EVENTS_SUPPORTED: Final = (
    CAEP_DEVICE_COMPLIANCE_CHANGE,
    CAEP_SESSION_REVOKED,
    RISC_ACCOUNT_DISABLED,
)

PUSH: Final = "urn:ietf:rfc:8935"
POLL: Final = "urn:ietf:rfc:8936"
DELIVERY_METHODS: Final = (PUSH, POLL)

SET_TYP: Final = "secevent+jwt"  # RFC 8417 section 2.3, CAEP interoperability profile
SPEC_VERSION: Final = "1_0"  # SSF 1.0 section 7.1

StreamStatus = Literal["enabled", "paused", "disabled"]
STATUSES: Final = ("enabled", "paused", "disabled")
