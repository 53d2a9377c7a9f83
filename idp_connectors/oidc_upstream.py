"""Broker mode: the gateway as an OpenID Connect relying party of an upstream IdP.

OpenID Connect Core 1.0 (authorization code flow, section 3.1) with PKCE (RFC 7636, S256),
``state`` and ``nonce``, provider discovery (OpenID Connect Discovery 1.0, validated with
authlib's ``OpenIDProviderMetadata``), and authlib's OAuth 2.0 client for the authorization URL
and the token request. The ID token is verified by :func:`verify_upstream_id_token` with every
option spelled out. The upstream's answer becomes an
:class:`idp_connectors.identity.ExternalIdentity`; mapping it to our user is the caller's
:class:`~idp_connectors.identity.UserDirectory`.

Any upstream failure raises a :class:`~idp_connectors.errors.ConnectorError`: the gateway then
issues no token. HTTP goes through a client from :func:`idp_connectors.http.make_client`.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.client import OAuth2Client
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oidc.discovery import OpenIDProviderMetadata
from pydantic import ConfigDict, Field, SecretStr

from idp_connectors.errors import (
    ConnectorError,
    Expired,
    LoginStateError,
    MalformedToken,
    NonceMismatch,
    UpstreamDenied,
    UpstreamProtocolError,
    UpstreamUnavailable,
    WrongAudience,
)
from idp_connectors.http import fetch_json
from idp_connectors.identity import ExternalIdentity, IdentityLinking
from idp_connectors.jwks import JwksCache, decode_with_jwks
from idp_connectors.metrics import EXTERNAL_TOKEN_REFUSALS, EXTERNAL_TOKENS_VERIFIED
from mdm_core.support.durations import DurationsModel

__all__ = [
    "UpstreamOidcSettings",
    "PendingUpstreamLogin",
    "UpstreamLogin",
    "OidcUpstream",
    "verify_upstream_id_token",
]

# Asymmetric algorithms only: an HMAC-signed ID token would be keyed with our client secret,
# which we refuse to accept as proof of the upstream's identity.
_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}


_PROFILE_CLAIMS = ("email", "email_verified", "preferred_username", "name")


class UpstreamOidcSettings(DurationsModel):
    """One upstream OpenID provider the gateway brokers logins to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")  # used in the callback URL
    issuer: str  # must equal the discovery document's issuer exactly
    discovery_url: str | None = None  # default: issuer + /.well-known/openid-configuration
    client_id: str
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
        "client_secret_basic"  # noqa: S105 - the name of an auth method, not a secret
    )
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway: timedelta = timedelta(seconds=30)
    # An ID token older than this (iat) is refused even if it has not expired.
    max_id_token_age: timedelta = timedelta(minutes=10)
    # A login started at the gateway must come back from the upstream within this time.
    login_ttl: timedelta = timedelta(minutes=10)
    # How an upstream identity (iss, sub) not linked yet may be linked to a directory user the
    # first time; default: never (only identities an admin linked). Once linked, logins go by
    # (iss, sub) only.
    linking: IdentityLinking = Field(default_factory=IdentityLinking)


@dataclass(frozen=True, slots=True)
class PendingUpstreamLogin:
    """What the gateway keeps (server side) between redirect and callback. Secret values."""

    upstream: str
    state: str
    nonce: str
    code_verifier: str
    started_at: float  # epoch seconds

    def to_dict(self) -> dict[str, str | float]:
        return {
            "upstream": self.upstream,
            "state": self.state,
            "nonce": self.nonce,
            "code_verifier": self.code_verifier,
            "started_at": self.started_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingUpstreamLogin:
        try:
            return cls(
                upstream=str(data["upstream"]),
                state=str(data["state"]),
                nonce=str(data["nonce"]),
                code_verifier=str(data["code_verifier"]),
                started_at=float(data["started_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LoginStateError("pending login record is unreadable") from exc


@dataclass(frozen=True, slots=True)
class UpstreamLogin:
    """A completed upstream login: who, plus the verified ID token claims."""

    identity: ExternalIdentity
    claims: Mapping[str, Any]


class _HttpxSession:
    """The ``session`` authlib's generic OAuth2Client posts through, on our httpx client."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def post(
        self,
        url: str,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: Any = None,
        **_: Any,
    ) -> httpx.Response:
        body = urlencode(dict(data or {}))
        merged = dict(headers or {})
        if auth is not None:  # authlib ClientAuth: client_secret_basic / _post / none
            url, merged, body = auth.prepare("POST", url, merged, body)
        try:
            return self._http.post(url, content=body, headers=merged)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"token endpoint: {type(exc).__name__}") from exc


def verify_upstream_id_token(
    token: str,
    keys: JwksCache,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    algorithms: tuple[str, ...],
    leeway: timedelta,
    max_age: timedelta,
    now: float,
) -> dict[str, Any]:
    """Verify an upstream ID token (OIDC Core 3.1.3.7) and return its claims.

    Raises a :class:`~idp_connectors.errors.ConnectorError`; every refusal is counted in
    ``posture_external_token_refusals_total{kind="upstream_id_token"}``.
    """
    try:
        claims = _verify_id_token(
            token,
            keys,
            issuer=issuer,
            client_id=client_id,
            nonce=nonce,
            algorithms=algorithms,
            leeway=leeway,
            max_age=max_age,
            now=now,
        )
    except ConnectorError as exc:
        EXTERNAL_TOKEN_REFUSALS.labels("upstream_id_token", exc.reason).inc()
        raise
    EXTERNAL_TOKENS_VERIFIED.labels("upstream_id_token").inc()
    return claims


def _verify_id_token(
    token: str,
    keys: JwksCache,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    algorithms: tuple[str, ...],
    leeway: timedelta,
    max_age: timedelta,
    now: float,
) -> dict[str, Any]:
    claims = decode_with_jwks(
        token,
        keys,
        # Explicit, asymmetric only; never taken from the token header.
        algorithms=algorithms,
        options={
            "require": ["iss", "sub", "aud", "exp", "iat", "nonce"],
            "verify_signature": True,
            "verify_exp": True,  # an expired ID token is refused
            "verify_iat": True,
            "verify_nbf": True,
            "verify_iss": True,
            "verify_aud": True,
            # aud may be an array (OIDC Core allows it); azp is checked below instead.
            "strict_aud": False,
        },
        issuer=issuer,
        audience=client_id,
        leeway=leeway.total_seconds(),
    )
    aud = claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
        raise WrongAudience("multiple audiences and azp is not our client_id")
    if "azp" in claims and claims["azp"] != client_id:
        raise WrongAudience("azp is not our client_id")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise MalformedToken("sub is not a non-empty string")
    token_nonce = claims["nonce"]
    if not isinstance(token_nonce, str) or not hmac.compare_digest(
        token_nonce.encode(), nonce.encode()
    ):
        raise NonceMismatch("ID token nonce does not match the login's nonce")
    iat = claims["iat"]
    if not isinstance(iat, int | float) or now - float(iat) > max_age.total_seconds():
        raise Expired("ID token was issued too long ago")
    return claims


class OidcUpstream:
    """One upstream OpenID provider: begins logins and completes them from the callback."""

    def __init__(
        self,
        settings: UpstreamOidcSettings,
        *,
        redirect_uri: str,
        http: httpx.Client,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if http is None or not redirect_uri:
            raise ValueError("OidcUpstream needs an http client and a redirect_uri")
        bad = [alg for alg in settings.algorithms if alg not in _ASYMMETRIC]
        if bad or not settings.algorithms:
            raise ValueError(f"upstream {settings.name}: algorithms must be asymmetric: {bad}")
        self.settings = settings
        self.redirect_uri = redirect_uri
        self._http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: OpenIDProviderMetadata | None = None
        self._keys: JwksCache | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    def metadata(self) -> OpenIDProviderMetadata:
        """The upstream's discovery document, fetched once and validated."""
        with self._lock:
            if self._metadata is None:
                url = self.settings.discovery_url or (
                    self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
                )
                document = OpenIDProviderMetadata(fetch_json(self._http, url))
                try:
                    document.validate()
                except ValueError as exc:
                    raise UpstreamProtocolError(f"discovery document invalid: {exc}") from exc
                if document["issuer"] != self.settings.issuer:
                    # OIDC Discovery 4.3: the issuer must be identical to the configured one.
                    raise UpstreamProtocolError("discovery issuer differs from configured issuer")
                for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(document.get(field), str):
                        raise UpstreamProtocolError(f"discovery document lacks {field}")
                self._keys = JwksCache(self._http, document["jwks_uri"])
                self._metadata = document
            return self._metadata

    def _oauth_client(self) -> OAuth2Client:
        secret = self.settings.client_secret
        return OAuth2Client(
            _HttpxSession(self._http),
            client_id=self.settings.client_id,
            client_secret=secret.get_secret_value() if secret else None,
            token_endpoint_auth_method=self.settings.token_endpoint_auth_method,
            scope=" ".join(self.settings.scopes),
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
        )

    def begin(self) -> tuple[str, PendingUpstreamLogin]:
        """The authorization URL to redirect the browser to, and the state to keep server side."""
        metadata = self.metadata()
        pending = PendingUpstreamLogin(
            upstream=self.name,
            state=generate_token(32),
            nonce=generate_token(32),
            code_verifier=generate_token(64),  # RFC 7636: 43-128 characters
            started_at=self._clock(),
        )
        url, _ = self._oauth_client().create_authorization_url(
            metadata["authorization_endpoint"],
            state=pending.state,
            nonce=pending.nonce,
            code_verifier=pending.code_verifier,
        )
        return str(url), pending

    def complete(self, pending: PendingUpstreamLogin, params: Mapping[str, str]) -> UpstreamLogin:
        """Finish the login from the callback's query parameters; raise on any problem."""
        now = self._clock()
        if pending.upstream != self.name:
            raise LoginStateError("callback for a different upstream")
        if now - pending.started_at > self.settings.login_ttl.total_seconds():
            raise LoginStateError("the upstream login took too long")
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise LoginStateError("state does not match the login")
        if "error" in params:
            raise UpstreamDenied(params["error"][:64], params.get("error_description", "")[:200])
        metadata = self.metadata()
        # RFC 9207: when the upstream says who answered, it must be the one we asked.
        if "iss" in params and params["iss"] != self.settings.issuer:
            raise LoginStateError("callback iss is not the upstream's issuer")
        code = params.get("code")
        if not code:
            raise UpstreamProtocolError("callback has neither code nor error")
        try:
            token = self._oauth_client().fetch_token(
                metadata["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=pending.code_verifier,
            )
        except OAuth2Error as exc:
            raise UpstreamDenied(str(exc.error or "token_error")[:64]) from exc
        except httpx.HTTPStatusError as exc:
            raise UpstreamUnavailable(f"token endpoint: HTTP {exc.response.status_code}") from exc
        except ValueError as exc:
            raise UpstreamProtocolError(f"token endpoint: {exc}") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise UpstreamProtocolError("token response has no id_token")
        assert self._keys is not None  # set together with the metadata
        supported = metadata.get("id_token_signing_alg_values_supported") or []
        algorithms = tuple(a for a in self.settings.algorithms if a in supported)
        claims = verify_upstream_id_token(
            id_token,
            self._keys,
            issuer=self.settings.issuer,
            client_id=self.settings.client_id,
            nonce=pending.nonce,
            algorithms=algorithms or self.settings.algorithms,
            leeway=self.settings.leeway,
            max_age=self.settings.max_id_token_age,
            now=now,
        )
        access_token = token.get("access_token")
        if isinstance(access_token, str) and "email" not in claims:
            claims = {**claims, **self._userinfo(metadata, access_token, claims["sub"])}
        return UpstreamLogin(identity=_identity(self.settings.issuer, claims), claims=claims)

    def _userinfo(
        self, metadata: OpenIDProviderMetadata, access_token: str, sub: str
    ) -> dict[str, Any]:
        """Profile claims from the UserInfo endpoint (OIDC Core 5.3), when the ID token has none.

        Only profile claims are taken (never iss/sub/aud/nonce), and only when the response's
        ``sub`` equals the ID token's (5.3.2: otherwise the response must not be used).
        """
        endpoint = metadata.get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return {}
        try:
            response = self._http.get(endpoint, headers={"Authorization": f"Bearer {access_token}"})
            info = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamUnavailable(f"userinfo: {type(exc).__name__}") from exc
        if not isinstance(info, dict):
            raise UpstreamProtocolError("userinfo did not answer a JSON object")
        if info.get("sub") != sub:
            raise UpstreamProtocolError("userinfo sub differs from the ID token's")
        return {k: info[k] for k in _PROFILE_CLAIMS if k in info}


def _identity(issuer: str, claims: Mapping[str, Any]) -> ExternalIdentity:
    email = claims.get("email")
    username = claims.get("preferred_username")
    return ExternalIdentity(
        issuer=issuer,
        subject=str(claims["sub"]),
        email=email if isinstance(email, str) else None,
        email_verified=claims.get("email_verified") is True,
        username=username if isinstance(username, str) else None,
    )
