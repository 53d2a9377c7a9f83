"""The exception tree of the identity connectors; every leaf maps to one machine-readable reason.

::

    ConnectorError                      connector.error
    ├── UpstreamError                   the upstream IdP failed: no token is issued
    │   ├── UpstreamUnavailable         upstream.unavailable     network error, timeout, 5xx
    │   ├── UpstreamProtocolError       upstream.protocol        malformed discovery/token/JWKS
    │   └── UpstreamDenied              upstream.denied          the IdP answered error=...
    ├── LoginStateError                 upstream.state_mismatch  callback does not match the login
    ├── TokenRejected                   a token from outside failed validation
    │   ├── MalformedToken              token.malformed          not a JWT, claim missing/ill-typed
    │   ├── DisallowedAlgorithm         token.bad_algorithm      alg not in the explicit allow-list
    │   ├── UnknownKey                  token.unknown_key        kid not in the issuer's JWKS
    │   ├── BadSignature                token.bad_signature
    │   ├── WrongIssuer                 token.wrong_issuer
    │   ├── WrongAudience               token.wrong_audience
    │   ├── Expired                     token.expired            exp passed / iat too old
    │   └── NonceMismatch               token.nonce_mismatch
    └── UserNotMapped                   user.unknown             no active directory user matches

Callers catch :class:`ConnectorError` and refuse with ``exc.reason``; the message is for logs and
never carries a secret or a whole token.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ConnectorError",
    "UpstreamError",
    "UpstreamUnavailable",
    "UpstreamProtocolError",
    "UpstreamDenied",
    "LoginStateError",
    "TokenRejected",
    "MalformedToken",
    "DisallowedAlgorithm",
    "UnknownKey",
    "BadSignature",
    "WrongIssuer",
    "WrongAudience",
    "Expired",
    "NonceMismatch",
    "UserNotMapped",
]


class ConnectorError(Exception):
    """Base of every connector failure. ``reason`` is the machine-readable code."""

    reason: ClassVar[str] = "connector.error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.reason)


class UpstreamError(ConnectorError):
    reason = "upstream.error"


class UpstreamUnavailable(UpstreamError):
    reason = "upstream.unavailable"


class UpstreamProtocolError(UpstreamError):
    reason = "upstream.protocol"


class UpstreamDenied(UpstreamError):
    """The IdP answered with an OAuth error; ``error`` is its code (``access_denied``, ...)."""

    reason = "upstream.denied"

    def __init__(self, error: str, description: str | None = None) -> None:
        self.error = error
        self.description = description
        super().__init__(
            f"upstream IdP refused: {error}" + (f" ({description})" if description else "")
        )


class LoginStateError(ConnectorError):
    reason = "upstream.state_mismatch"


class TokenRejected(ConnectorError):
    reason = "token.rejected"


class MalformedToken(TokenRejected):
    reason = "token.malformed"


class DisallowedAlgorithm(TokenRejected):
    reason = "token.bad_algorithm"


class UnknownKey(TokenRejected):
    reason = "token.unknown_key"


class BadSignature(TokenRejected):
    reason = "token.bad_signature"


class WrongIssuer(TokenRejected):
    reason = "token.wrong_issuer"


class WrongAudience(TokenRejected):
    reason = "token.wrong_audience"


class Expired(TokenRejected):
    reason = "token.expired"


class NonceMismatch(TokenRejected):
    reason = "token.nonce_mismatch"


class UserNotMapped(ConnectorError):
    reason = "user.unknown"
