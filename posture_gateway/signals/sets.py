"""Security Event Tokens (RFC 8417) as the CAEP interoperability profile wants them.

Claims: ``iss`` (our OP's issuer), ``aud`` (the stream's), ``iat``, ``jti``, ``txn`` (RFC 8417
section 2.2: the outbox event id, the same for every stream's copy), ``sub_id`` (SSF 1.0
section 3: the subject; complex for user + device), ``events`` with exactly one event (SSF 1.0
section 4.1). No ``sub`` and no ``exp`` (SSF 1.0 sections 4.1.2 and 4.1.7; CAEP
interoperability profile section 2.7). Header: ``typ: secevent+jwt`` (RFC 8417 section 2.3),
``alg: RS256`` and ``kid`` of the key ring's active RSA key (at least 2048 bits, checked by
:func:`check_signing_key` at start).

The claims are built when the delivery row is written (same transaction as the state change)
and signed when sent, so a retry carries the same ``jti`` and ``iat``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from posture_gateway.signals.vocabulary import SET_TYP
from posture_gateway.signing.key_ring import KeyRing

__all__ = ["set_claims", "sign_set", "check_signing_key", "new_jti", "MIN_RSA_BITS"]

MIN_RSA_BITS = 2048


def new_jti() -> str:
    return uuid.uuid4().hex


def set_claims(
    *,
    issuer: str,
    aud: str | list[str],
    iat: int,
    jti: str,
    txn: str,
    sub_id: Mapping[str, Any],
    event_type: str,
    body: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "iss": issuer,
        "aud": aud,
        "iat": iat,
        "jti": jti,
        "txn": txn,
        "sub_id": dict(sub_id),
        "events": {event_type: dict(body)},
    }


def sign_set(keys: KeyRing, claims: Mapping[str, Any]) -> str:
    """The compact JWS of ``claims`` (RS256, ``typ: secevent+jwt``, ``kid``)."""
    if "sub" in claims or "exp" in claims:
        raise ValueError("a SET carries neither sub nor exp (CAEP interoperability profile)")
    return keys.sign_jwt(claims, headers={"typ": SET_TYP}, alg="RS256")


def check_signing_key(keys: KeyRing) -> None:
    """Raise ``ValueError`` unless the active RS256 key is an RSA key of >= 2048 bits."""
    key = keys.active("RS256").private_key
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
        raise ValueError(f"the SET signing key must be RSA with at least {MIN_RSA_BITS} bits")
