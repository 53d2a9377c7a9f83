"""Who calls the transmitter's endpoints: a receiver with an OAuth bearer access token.

The token is one our own OP issued with the client credentials grant (RFC 9068 JWT, verified
by the gateway's :class:`~posture_gateway.access.read_model.CachedBearerTokens`: signature with
our keys only, ``alg`` pinned, issuer, audience, expiry, not revoked). Its ``scope`` must carry
the endpoint's scope (``ssf.read`` to read, ``ssf.manage`` to change; ``ssf.manage`` implies
read) and its ``client_id`` must be a configured receiver. Any failure is
:class:`AuthFailure` (401 ``invalid_token`` / 403 ``insufficient_scope``; 503
``temporarily_unavailable`` when the token store cannot answer), before any state is read or
changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from posture_gateway.access.backends import is_backend_outage
from posture_gateway.integrations.state import AccessTokenVerifier
from posture_gateway.signals.settings import (
    SCOPE_MANAGE,
    SCOPE_READ,
    ReceiverSettings,
    SignalsSettings,
)

__all__ = ["AuthFailure", "Receiver", "authenticate"]


class AuthFailure(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class Receiver:
    client_id: str
    settings: ReceiverSettings
    scopes: frozenset[str]


def authenticate(
    authorization: str | None,
    verifier: AccessTokenVerifier,
    settings: SignalsSettings,
    scope: str,
) -> Receiver:
    if not authorization:
        raise AuthFailure(401, "invalid_request", "expected Authorization: Bearer <token>")
    kind, _, token = authorization.partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or not token or len(token) > 8192:
        raise AuthFailure(401, "invalid_token", "expected Authorization: Bearer <token>")
    try:
        claims = verifier.verify_access_token(token)
    except Exception as exc:  # any failure of the verifier is a refusal
        if is_backend_outage(exc):  # the token store cannot say now: not the caller's fault
            raise AuthFailure(
                503, "temporarily_unavailable", "cannot verify the access token now"
            ) from exc
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise AuthFailure(401, "invalid_token", f"access token refused: {reason}") from exc
    client_id = claims.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise AuthFailure(401, "invalid_token", "token names no client")
    receiver = settings.receiver(client_id)
    if receiver is None:
        raise AuthFailure(403, "insufficient_scope", "this client is not a signals receiver")
    scopes = frozenset(str(claims.get("scope", "")).split())
    granted = scopes | ({SCOPE_READ} if SCOPE_MANAGE in scopes else set())
    if scope not in granted:
        raise AuthFailure(403, "insufficient_scope", f"token lacks scope {scope}")
    return Receiver(client_id=client_id, settings=receiver, scopes=scopes)
