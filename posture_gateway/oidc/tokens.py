"""Issuing and verifying the JWTs the gateway signs: ID tokens and access tokens.

- ID tokens (OpenID Connect Core 1.0 section 2): ``iss``, ``sub``, ``aud``, ``exp``, ``iat``,
  ``auth_time``, ``nonce``, ``acr``, ``amr``, ``at_hash``/``c_hash`` when given, plus the
  caller's extra claims (posture claims, profile claims). Signed RS256 by default, ES256 when a
  relying party asks for it.
- Access tokens (RFC 9068, ``typ: at+jwt``): ``iss``, ``sub``, ``aud`` (the issuer's userinfo
  resource), ``client_id``, ``scope``, ``jti``, ``iat``, ``exp``. They are also recorded in the
  grant store by ``jti`` so they can be revoked; verification checks the signature here and
  the store afterwards.

Verification of our own tokens takes the algorithm from OUR key record (looked up by ``kid``),
never from the token header, so ``alg: none`` and "HS256 signed with the public key" tokens
are refused before any signature check. D2's integrations (Entra EAM, decision endpoint)
issue through :class:`TokenIssuer` and stay off the key objects.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from posture_gateway.signing.key_ring import Alg, KeyRing

__all__ = [
    "ACCESS_TOKEN_TYP",
    "RESERVED_CLAIMS",
    "TokenRejected",
    "IssuedAccessToken",
    "TokenIssuer",
    "half_hash",
]

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a JOSE media type, not a secret
# Claims the issuer sets itself; extra_claims may not override them.
RESERVED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "at_hash",
        "c_hash",
        "jti",
        "client_id",
        "scope",
    }
)
# Clock skew we accept between this process and another gateway process verifying a token.
VERIFY_LEEWAY = timedelta(seconds=5)


class TokenRejected(Exception):
    """A token we were shown is not one we issued or is no longer valid.

    ``reason`` is machine-readable: malformed, unknown_kid, bad_signature, wrong_type,
    expired, wrong_issuer, wrong_audience, missing_claim.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def half_hash(value: str, alg: Alg) -> str:
    """``at_hash`` / ``c_hash``: left half of the SHA-256 of the ASCII value, base64url."""
    assert alg in ("RS256", "ES256")  # both use SHA-256
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    jti: str
    expires_at: datetime


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenIssuer:
    """Signs ID and access tokens for one issuer with one key ring."""

    def __init__(
        self,
        keys: KeyRing,
        *,
        issuer: str,
        id_token_ttl: timedelta,
        access_token_ttl: timedelta,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if keys is None:
            raise ValueError("TokenIssuer needs a key ring")
        self.keys = keys
        self.issuer = issuer
        self.id_token_ttl = id_token_ttl
        self.access_token_ttl = access_token_ttl
        self._clock = clock

    @property
    def access_token_audience(self) -> str:
        """The resource our access tokens are for: this issuer's userinfo endpoint."""
        return f"{self.issuer}/oauth/userinfo"

    def id_token(
        self,
        *,
        subject: str,
        audience: str,
        nonce: str | None,
        auth_time: int,
        acr: str | None,
        amr: Sequence[str],
        extra_claims: Mapping[str, Any] | None = None,
        alg: Alg = "RS256",
        access_token: str | None = None,
        code: str | None = None,
        ttl: timedelta | None = None,
    ) -> str:
        """Sign an ID token for ``audience`` (a client id) about ``subject``.

        ``extra_claims`` (posture, profile) cannot override the reserved claims: a clash raises
        ValueError, because it is a programming error, not input.
        """
        extra = dict(extra_claims or {})
        clash = RESERVED_CLAIMS.intersection(extra)
        if clash:
            raise ValueError(f"extra claims may not set reserved claims: {sorted(clash)}")
        now = self._clock()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "azp": audience,
            "iat": int(now.timestamp()),
            "exp": int((now + (ttl or self.id_token_ttl)).timestamp()),
            "auth_time": auth_time,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if acr is not None:
            claims["acr"] = acr
        if amr:
            claims["amr"] = list(amr)
        if access_token is not None:
            claims["at_hash"] = half_hash(access_token, alg)
        if code is not None:
            claims["c_hash"] = half_hash(code, alg)
        claims.update(extra)
        return self.keys.sign_jwt(claims, {"typ": "JWT"}, alg)

    def access_token(
        self,
        *,
        subject: str,
        client_id: str,
        scope: str,
        extra_claims: Mapping[str, Any] | None = None,
        ttl: timedelta | None = None,
    ) -> IssuedAccessToken:
        """Sign an RFC 9068 access token (RS256). The caller records its ``jti``."""
        extra = dict(extra_claims or {})
        clash = RESERVED_CLAIMS.intersection(extra)
        if clash:
            raise ValueError(f"extra claims may not set reserved claims: {sorted(clash)}")
        now = self._clock()
        expires_at = now + (ttl or self.access_token_ttl)
        jti = secrets.token_urlsafe(24)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.access_token_audience,
            "client_id": client_id,
            "scope": scope,
            "jti": jti,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            **extra,
        }
        token = self.keys.sign_jwt(claims, {"typ": ACCESS_TOKEN_TYP}, "RS256")
        return IssuedAccessToken(token=token, jti=jti, expires_at=expires_at)

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """Verify an access token we issued; return its claims or raise :class:`TokenRejected`.

        The store check (revoked?) is the caller's next step.
        """
        claims = self._verify(
            token,
            typ=ACCESS_TOKEN_TYP,
            audience=self.access_token_audience,
            require=["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"],
        )
        return claims

    def verify_id_token(
        self, token: str, *, audience: str, verify_exp: bool = True
    ) -> dict[str, Any]:
        """Verify an ID token we issued (e.g. an ``id_token_hint`` at end_session).

        ``verify_exp=False`` accepts an expired hint, which OpenID RP-Initiated Logout allows.
        """
        return self._verify(
            token,
            typ="JWT",
            audience=audience,
            require=["iss", "sub", "aud", "exp", "iat"],
            verify_exp=verify_exp,
        )

    def verify_id_token_audience(self, token: str) -> str:
        """The client an ID token we issued was for (an ``id_token_hint`` at end_session).

        Signature, ``typ`` and issuer are verified; expiry is not (RP-initiated logout accepts
        expired hints) and the audience is returned for the caller to match. Raises
        :class:`TokenRejected`.
        """
        claims = self._verify(
            token,
            typ="JWT",
            audience=None,
            require=["iss", "sub", "aud", "exp", "iat"],
            verify_exp=False,
        )
        aud = claims["aud"]
        if not isinstance(aud, str):
            raise TokenRejected("wrong_audience", "expected a single audience")
        return aud

    def _verify(
        self,
        token: str,
        *,
        typ: str,
        audience: str | None,
        require: list[str],
        verify_exp: bool = True,
    ) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected("malformed", str(exc)) from exc
        kid = header.get("kid")
        key = self.keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenRejected("unknown_kid", "not signed by a published key of this issuer")
        if header.get("typ") != typ:
            raise TokenRejected("wrong_type", f"expected typ {typ}")
        now = self._clock()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                # The algorithm comes from our key record, never from the token header:
                # "none" and HS256-with-the-public-key tokens fail here.
                algorithms=[key.alg],
                audience=audience,
                issuer=self.issuer,
                leeway=VERIFY_LEEWAY,
                options={
                    "require": require,
                    "verify_signature": True,
                    "verify_exp": verify_exp,
                    "verify_iat": True,
                    "verify_aud": audience is not None,
                    "verify_iss": True,
                    "strict_aud": True,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("expired", str(exc)) from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected("wrong_audience", str(exc)) from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected("wrong_issuer", str(exc)) from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected("missing_claim", str(exc)) from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected("bad_signature", str(exc)) from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected("malformed", str(exc)) from exc
        # pyjwt checks iat only for type; refuse tokens from the future beyond the leeway.
        if claims["iat"] > (now + VERIFY_LEEWAY).timestamp():
            raise TokenRejected("malformed", "iat is in the future")
        return claims
