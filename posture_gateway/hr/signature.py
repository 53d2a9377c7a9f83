"""Webhook signatures: HMAC-SHA256 (hex) over the raw body followed by the timestamp header.

BambooHR signs ``body || X-BambooHR-Timestamp`` with the webhook's private key and sends the
hex digest in ``X-BambooHR-Signature``; our generic shape is signed the same way
(``X-Posture-Signature`` over ``body || X-Posture-Timestamp``). :func:`verify` refuses a missing
or malformed header, a timestamp outside ``[now - max_age, now + future_leeway]`` and a wrong
signature; the digests are compared in constant time.

BambooHR does not publish the timestamp's encoding, so the three unambiguous ones are read:
Unix seconds (up to 11 digits), Unix milliseconds (13 digits) and ISO 8601 with an explicit
offset (``2026-12-01T12:00:00Z``, or ``+0000`` as BambooHR writes its payload's timestamps).
The signature covers the header exactly as sent, so how it is read changes only the replay
window's check, never what is signed. Anything else (a fraction, a sign, 12 digits, a time
without its offset) is ``invalid_timestamp``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

from posture_gateway.hr.errors import HrError

__all__ = ["sign", "verify", "SIGNATURE_HEX_LENGTH"]

#: A SHA-256 digest in hex.
SIGNATURE_HEX_LENGTH = 64
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_SECONDS = re.compile(r"^[0-9]{1,11}$")
_MILLISECONDS = re.compile(r"^[0-9]{13}$")
_ISO = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"  # date and time
    r"(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:?[0-9]{2})$"  # an optional fraction, the offset
)


def _sent_at(timestamp: str) -> float | None:
    """The Unix time ``timestamp`` names, or ``None`` when it is none of the three encodings."""
    if _SECONDS.fullmatch(timestamp):
        return float(int(timestamp))
    if _MILLISECONDS.fullmatch(timestamp):
        return int(timestamp) / 1000
    if _ISO.fullmatch(timestamp):
        try:
            return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
        except ValueError:  # 2026-13-45...
            return None
    return None


def sign(secret: bytes, body: bytes, timestamp: str) -> str:
    """The hex signature of ``body`` sent at ``timestamp`` (what the sender computes)."""
    return hmac.new(secret, body + timestamp.encode("ascii"), hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    body: bytes,
    *,
    signature: str | None,
    timestamp: str | None,
    now: datetime,
    max_age: timedelta,
    future_leeway: timedelta,
) -> datetime:
    """Check one delivery; returns its timestamp. Raises :class:`HrError` (401) otherwise."""
    if not signature or not timestamp:
        raise HrError(401, "missing_signature", "the signature and timestamp headers are required")
    sent = _sent_at(timestamp)
    if sent is None:
        raise HrError(
            401,
            "invalid_timestamp",
            "the timestamp header is not Unix seconds, milliseconds or ISO 8601 with an offset",
        )
    if not _HEX.fullmatch(signature):
        raise HrError(401, "invalid_signature", "the signature is not a hex HMAC-SHA256")
    expected = sign(secret, body, timestamp)
    # Compared before the clock so that the answer to an unsigned caller never depends on
    # its timestamp's value; constant time either way.
    if not hmac.compare_digest(expected, signature.lower()):
        raise HrError(401, "invalid_signature", "the signature does not match the body")
    at = now.timestamp()
    if sent < at - max_age.total_seconds():
        raise HrError(401, "stale_timestamp", "the delivery is older than the replay window")
    if sent > at + future_leeway.total_seconds():
        raise HrError(401, "future_timestamp", "the delivery's timestamp is in the future")
    return datetime.fromtimestamp(sent, UTC)
