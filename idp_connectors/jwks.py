"""Verifying JWTs signed by someone else: a cached JWKS (RFC 7517) and one decode helper.

:class:`JwksCache` fetches an issuer's key set through a client from
:func:`idp_connectors.http.make_client`, keeps it for ``ttl``, refetches once when a token names
an unknown ``kid`` (key rotation) but never more often than ``min_refresh_interval`` (a flood of
forged ``kid`` values cannot turn us into a DoS amplifier), and keeps serving the last good set
for ``max_stale`` when the issuer is briefly unreachable.

:func:`decode_with_jwks` is the mechanics under the per-token-kind verifiers
(:func:`idp_connectors.oidc_upstream.verify_upstream_id_token`,
:func:`idp_connectors.entra.verify_id_token_hint`): they spell out algorithms and options; this
function checks the header's ``alg`` against that explicit list *before* touching a key and
maps every pyjwt failure onto :mod:`idp_connectors.errors`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import jwt

from idp_connectors.errors import (
    BadSignature,
    DisallowedAlgorithm,
    Expired,
    MalformedToken,
    UnknownKey,
    UpstreamError,
    UpstreamProtocolError,
    WrongAudience,
    WrongIssuer,
)
from idp_connectors.http import fetch_json

__all__ = ["JwksCache", "decode_with_jwks"]

# A parsed key and the "alg" its JWK entry pins (None: any alg of its key type).
_Entry = tuple[jwt.PyJWK, str | None]

_KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class JwksCache:
    """An issuer's signing keys, fetched lazily and cached (thread-safe)."""

    def __init__(
        self,
        client: httpx.Client,
        jwks_uri: str,
        *,
        ttl: float = 3600.0,
        min_refresh_interval: float = 60.0,
        max_stale: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client is None or not jwks_uri:
            raise ValueError("JwksCache needs a client and a jwks_uri")
        self._client = client
        self._uri = jwks_uri
        self._ttl = ttl
        self._min_refresh = min_refresh_interval
        self._max_stale = max_stale
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str | None, list[_Entry]] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None

    @property
    def jwks_uri(self) -> str:
        return self._uri

    def key(self, kid: str | None, alg: str) -> Any:
        """The public key object for ``kid`` usable with ``alg``; raises :class:`UnknownKey`."""
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at > self._ttl:
                self._refresh(now, allow_stale=True)
            found = self._find(kid, alg)
            if found is None and self._may_refetch(now):
                self._refresh(now, allow_stale=True)
                found = self._find(kid, alg)
        if found is None:
            raise UnknownKey(f"no {alg} key with kid {kid!r} in {self._uri}")
        return found.key

    def _may_refetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refresh

    def _refresh(self, now: float, *, allow_stale: bool) -> None:
        self._attempted_at = now
        try:
            document = fetch_json(self._client, self._uri)
            self._keys = _parse_jwks(document)
            self._fetched_at = now
        except UpstreamError:
            stale_ok = (
                allow_stale
                and self._fetched_at is not None
                and now - self._fetched_at <= self._max_stale
            )
            if not stale_ok:
                raise

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        wanted_kty = _KTY_FOR_ALG.get(alg[:2])
        candidates = self._keys.get(kid, []) if kid is not None else _all(self._keys)
        usable = [
            key
            for key, key_alg in candidates
            if key.key_type == wanted_kty and key_alg in (None, alg)
        ]
        # Without a kid a token may only be matched when the choice is unambiguous.
        return usable[0] if len(usable) == 1 or (kid is not None and usable) else None


def _all(keys: Mapping[str | None, list[_Entry]]) -> list[_Entry]:
    return [k for group in keys.values() for k in group]


def _parse_jwks(document: Mapping[str, Any]) -> dict[str | None, list[_Entry]]:
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list):
        raise UpstreamProtocolError("JWKS has no 'keys' array")
    parsed: dict[str | None, list[_Entry]] = {}
    for raw in raw_keys:
        if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
            continue  # encryption keys and junk entries are not signing keys
        try:
            key = jwt.PyJWK(raw)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue  # one unusable entry must not hide the others
        kid = raw.get("kid")
        key_alg = raw.get("alg")
        entry = (key, key_alg if isinstance(key_alg, str) else None)
        parsed.setdefault(kid if isinstance(kid, str) else None, []).append(entry)
    if not parsed:
        raise UpstreamProtocolError("JWKS holds no usable signing key")
    return parsed


def decode_with_jwks(
    token: str,
    keys: JwksCache,
    *,
    algorithms: Sequence[str],
    options: jwt.types.Options,
    issuer: str | Sequence[str],
    audience: str | None,
    leeway: float,
) -> dict[str, Any]:
    """Verify ``token`` against ``keys`` with exactly the given algorithms and options.

    The header ``alg`` must be in ``algorithms`` (checked first, so ``none`` and ``HS256``
    tokens never reach a key). Raises a :class:`TokenRejected` subclass on every failure.
    """
    if not isinstance(token, str) or token.count(".") != 2:
        raise MalformedToken("not a compact JWS")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise MalformedToken("unreadable JWS header") from exc
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise DisallowedAlgorithm(f"alg {alg!r} is not one of {list(algorithms)}")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise MalformedToken("kid is not a string")
    key = keys.key(kid, alg)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(algorithms),
            options=options,
            issuer=issuer,
            audience=audience,
            leeway=leeway,
        )
    except jwt.InvalidAlgorithmError as exc:
        raise DisallowedAlgorithm(str(exc)) from exc
    except jwt.InvalidSignatureError as exc:
        raise BadSignature("signature does not verify") from exc
    except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as exc:
        raise Expired(str(exc)) from exc
    except jwt.InvalidIssuerError as exc:
        raise WrongIssuer(str(exc)) from exc
    except jwt.InvalidAudienceError as exc:
        raise WrongAudience(str(exc)) from exc
    except jwt.InvalidTokenError as exc:  # missing claims, bad types, undecodable payload
        raise MalformedToken(str(exc)) from exc
    return claims
