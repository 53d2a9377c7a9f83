"""authlib's authorization server wired onto our clients, grant stores, key ring and tokens.

authlib owns the OAuth/OIDC protocol rules (RFC 6749 code grant, RFC 7636 PKCE, OpenID
Connect Core code flow, RFC 7662 introspection, RFC 7009 revocation); this module supplies
storage and token minting through its hooks and tightens three rules:

- PKCE is required of EVERY client and only ``S256`` is accepted (:class:`S256Required`);
- ``nonce`` is required (``OpenIDCode(require_nonce=True)``), and a nonce already used for a
  code of the same client is refused;
- codes are consumed atomically when the token request looks them up; a second use fails and
  revokes the tokens issued from the first (:meth:`CodeStore.consume`); refresh tokens rotate
  and a replayed one revokes its whole family;
- a refresh runs the device decision again (:meth:`DeviceBinding.recheck`: current posture,
  current policies, audited as channel ``oidc_refresh``) BEFORE the refresh token is spent:
  ``block`` revokes the family and answers ``invalid_grant``, ``restrict`` narrows the
  scopes, and the new ID token carries only the posture claims of that decision (never the
  login's); a decision that cannot be made answers ``503 temporarily_unavailable`` and spends
  nothing;
- every token lookup (introspection, userinfo, posture API bearer, code exchange) also asks
  :meth:`DeviceBinding.still_bound`: a token whose device or user is no longer trusted is
  inactive even if the revocation done with the quarantine / retirement / wipe was missed.

Access tokens are RFC 9068 JWTs (RS256) recorded by ``jti``; ID tokens are signed with the
client's ``id_token_signed_response_alg``. Views call :class:`OIDCProvider` methods; protocol
logic stays out of views.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import jwt
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, current_app
from sqlalchemy.exc import SQLAlchemyError

from mdm_core.access.decision import Decision
from mdm_core.access.evaluator import AccessDecisions
from posture_gateway.access.nonces import NonceStore
from posture_gateway.login.device_check import decision_claims, granted_scopes
from posture_gateway.oidc.authn import Authenticator
from posture_gateway.oidc.binding import DeviceBinding
from posture_gateway.oidc.claims import SUPPORTED_SCOPES, GroupsReader, token_claims
from posture_gateway.oidc.clients import Client, ClientRegistry
from posture_gateway.oidc.grants import (
    CodeRecord,
    CodeStore,
    GrantSubject,
    TokenRecord,
    TokenStore,
    digest,
)
from posture_gateway.oidc.local_users import LocalUsers
from posture_gateway.oidc.tokens import TokenIssuer, TokenRejected
from posture_gateway.signing.key_ring import KeyRing
from posture_gateway.sso.store import SessionStore

__all__ = [
    "OIDCProvider",
    "LoginSubject",
    "IssuedToken",
    "S256Required",
    "GatewayAuthorizationServer",
    "StoredAuthorizeRequest",
    "EXTENSION_KEY",
    "current_provider",
]

log = logging.getLogger(__name__)

# Where the app keeps its OIDCProvider (next to GatewayState in app.extensions["posture"]).
EXTENSION_KEY = "posture_oidc"


def current_provider() -> OIDCProvider:
    """The OpenID provider of the current app (inside an app or request context)."""
    provider = current_app.extensions[EXTENSION_KEY]
    assert isinstance(provider, OIDCProvider)
    return provider


Clock = Callable[[], datetime]


@dataclass(frozen=True)
class LoginSubject:
    """The grant user handed to authlib when the login flow issues a code."""

    subject: GrantSubject
    granted_scopes: frozenset[str] | None = None  # None = as requested


class StoredAuthorizeRequest(OAuth2Request):  # type: ignore[misc]
    """An authorization request rebuilt from the parameters saved at its first validation."""

    def __init__(self, uri: str, params: Mapping[str, str]) -> None:
        super().__init__("GET", uri)
        self._params = dict(params)
        self.payload = BasicOAuth2Payload(self._params)

    @property
    def args(self) -> dict[str, str]:
        return self._params

    @property
    def form(self) -> dict[str, str]:
        return {}


class S256Required(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client, S256 only: a missing or ``plain`` challenge is refused."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE: 'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("PKCE is required: missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)


def _own_payload(token: str) -> dict[str, Any]:
    """The claims of a JWT this process signed a moment ago (never of one we were shown:
    nothing is verified). pyjwt's unverified decode checks the base64 alphabet character by
    character in Python, ~10x this."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


class _Code:
    """authlib's authorization code model over a consumed :class:`CodeRecord`."""

    def __init__(self, record: CodeRecord) -> None:
        self.record = record
        self.code_challenge = record.code_challenge
        self.code_challenge_method = record.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.record.redirect_uri

    def get_scope(self) -> str:
        return self.record.scope

    def get_nonce(self) -> str | None:
        return self.record.nonce

    def get_auth_time(self) -> int:
        return self.record.subject.auth_time

    def get_acr(self) -> str:
        return self.record.subject.acr

    def get_amr(self) -> list[str]:
        return list(self.record.subject.amr)


@dataclass(frozen=True)
class IssuedToken:
    """A token we were shown (access or refresh) with its stored issuance."""

    kind: str  # "access_token" | "refresh_token"
    record: TokenRecord
    now: datetime
    claims: Mapping[str, Any] = field(default_factory=dict)
    # The device or user behind it is no longer trusted (DeviceBinding.still_bound): inactive.
    unbound: bool = False

    # authlib token model
    def check_client(self, client: Client) -> bool:
        return bool(self.record.client_id == client.client_id)

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_scope(self) -> str:
        return self.record.scope

    def get_expires_at(self) -> datetime | None:
        if self.kind == "access_token":
            return self.record.access_expires_at
        return self.record.refresh_expires_at

    def get_expires_in(self) -> int:
        expires = self.get_expires_at()
        return max(0, int((expires - self.now).total_seconds())) if expires else 0

    def is_expired(self) -> bool:
        expires = self.get_expires_at()
        return expires is None or self.now >= expires

    def is_revoked(self) -> bool:
        return self.record.revoked_at is not None or self.unbound

    def is_active(self) -> bool:
        return not self.is_expired() and not self.is_revoked()

    def get_user(self) -> GrantSubject:
        return self.record.subject


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    @property
    def provider(self) -> OIDCProvider:
        provider: OIDCProvider = self.server.provider
        return provider

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        user = request.user
        assert isinstance(user, LoginSubject)
        requested = request.scope.split()
        if user.granted_scopes is not None:
            requested = [s for s in requested if s in user.granted_scopes or s == "openid"]
        now = self.provider.now()
        data = request.payload.data
        self.provider.codes.save(
            CodeRecord(
                code_hash=digest(code),
                client_id=request.client.client_id,
                redirect_uri=request.payload.redirect_uri,
                scope=" ".join(requested),
                nonce=data.get("nonce"),
                code_challenge=data["code_challenge"],
                code_challenge_method=data["code_challenge_method"],
                subject=user.subject,
                created_at=now,
                expires_at=now + self.provider.code_ttl,
            )
        )

    def query_authorization_code(self, code: str, client: Client) -> _Code | None:
        record = self.provider.codes.consume(digest(code), now=self.provider.now())
        if record is None or record.client_id != client.client_id:
            return None
        return _Code(record)

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        """Nothing to do: the code was consumed atomically when it was looked up."""

    def authenticate_user(self, authorization_code: _Code) -> GrantSubject:
        subject = authorization_code.record.subject
        if not self.provider.subject_bound(subject):
            # The device was quarantined, revoked, retired or wiped since the login.
            raise InvalidGrantError("the device of this login is no longer trusted")
        return subject


class _TemporarilyUnavailable(OAuth2Error):  # type: ignore[misc]
    error = "temporarily_unavailable"
    status_code = 503


class _RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    """Refresh = a new device decision on the bound device, then rotation (see the module)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    _verdict: Decision | None = None
    _granted: frozenset[str] | None = None

    @property
    def provider(self) -> OIDCProvider:
        provider: OIDCProvider = self.server.provider
        return provider

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        provider = self.provider
        now = provider.now()
        refresh_hash = digest(refresh_token)
        found = provider.tokens.find_by_refresh(refresh_hash)
        client: Client = self.request.client
        if found is not None and found.refresh_active(now) and found.client_id == client.client_id:
            self._verdict = self._decide(found)  # raises: nothing spent
            if self._verdict.outcome == "block":
                provider.tokens.revoke(family_id=found.family_id, reason="refresh_blocked")
                provider.blocked(self._verdict)
                raise InvalidGrantError("the device no longer meets the access policy")
        # Unknown, expired, another client's or a replay: claiming settles it (a replay
        # revokes the family). Of concurrent refreshes at most one wins the claim.
        record = provider.tokens.claim_refresh(refresh_hash, now=now)
        if record is None or self._verdict is None:
            return None
        return IssuedToken("refresh_token", record, now)

    def _decide(self, found: TokenRecord) -> Decision:
        scope = self.request.payload.scope
        requested = frozenset((scope or found.scope).split())
        if not requested <= frozenset(found.scope.split()):
            raise InvalidScopeError()  # before anything is decided or spent
        try:
            verdict = self.provider.binding.recheck(
                subject=found.subject,
                client_id=found.client_id,
                requested_scopes=requested,
            )
        except SQLAlchemyError:
            raise  # the token view answers 503: nothing was spent
        except Exception as exc:
            log.exception("refresh: the device decision could not be made")
            raise _TemporarilyUnavailable("the device check is unavailable; retry") from exc
        self._granted = granted_scopes(verdict, requested)
        return verdict

    def authenticate_user(self, refresh_token: IssuedToken) -> GrantSubject:
        """The login's subject with the posture claims of the decision just made (only)."""
        assert self._verdict is not None
        verdict = self._verdict
        return replace(
            refresh_token.record.subject,
            posture={**decision_claims(verdict), "posture_outcome": verdict.outcome},
        )

    def issue_token(self, user: GrantSubject, refresh_token: IssuedToken) -> dict[str, Any]:
        assert self._verdict is not None
        scopes = (self.request.payload.scope or refresh_token.get_scope()).split()
        granted = self._granted
        if granted is not None:  # restrict narrows (never widens); openid stays, as at login
            scopes = [s for s in scopes if s in granted or s == "openid"]
        token: dict[str, Any] = self.generate_token(
            user=user, scope=" ".join(scopes), include_refresh_token=True
        )
        return token

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
        """Nothing to do: claiming the refresh token revoked its issuance atomically."""


class _OpenIDCode(OpenIDCode):  # type: ignore[misc]
    def __init__(self, provider: OIDCProvider) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return self.provider.codes.nonce_seen(request.payload.client_id, nonce)

    def encode_id_token(self, token: Mapping[str, Any], request: OAuth2Request) -> str:
        code: _Code = request.authorization_code
        client: Client = request.client
        subject = code.record.subject
        extra = self.provider.released_claims(subject, code.record.scope)
        if subject.sid:
            extra["sid"] = subject.sid  # OIDC Front-/Back-Channel Logout: the session
        return self.provider.issuer.id_token(
            subject=subject.user_id,
            audience=client.client_id,
            nonce=code.record.nonce,
            auth_time=subject.auth_time,
            acr=subject.acr or None,
            amr=subject.amr,
            extra_claims=extra,
            alg=client.id_token_signed_response_alg,
            access_token=token.get("access_token"),
        )


class _Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        provider: OIDCProvider = self.server.provider
        return provider.lookup_token(token_string, token_type_hint)

    def check_permission(self, token: IssuedToken, client: Client, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
        provider: OIDCProvider = self.server.provider
        expires = token.get_expires_at()
        return {
            "active": True,
            "token_type": token.kind,
            "scope": token.record.scope,
            "client_id": token.record.client_id,
            "sub": token.record.subject.user_id,
            "iss": provider.issuer.issuer,
            "iat": int(token.record.issued_at.timestamp()),
            "exp": int(expires.timestamp()) if expires else None,
            "auth_time": token.record.subject.auth_time,
            "acr": token.record.subject.acr,
            **(
                {"device_id": token.record.subject.device_id}
                if token.record.subject.device_id
                else {}
            ),
        }


class _Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        provider: OIDCProvider = self.server.provider
        return provider.lookup_token(
            token_string, token_type_hint, verify_exp=False, check_binding=False
        )

    def revoke_token(self, token: IssuedToken, request: Any) -> None:
        provider: OIDCProvider = self.server.provider
        # RFC 7009 2.1: revoking a refresh token also invalidates the access tokens of the
        # same grant; revoking an access token revokes its issuance (and its refresh token).
        if token.kind == "refresh_token":
            provider.tokens.revoke(family_id=token.record.family_id, reason="revoked")
        else:
            provider.tokens.revoke(token_id=token.record.id, reason="revoked")


class GatewayAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's Flask server, bound to one :class:`OIDCProvider`."""

    def __init__(self, provider: OIDCProvider) -> None:
        super().__init__()
        self.provider = provider

    def validate_requested_scope(self, scope: str | None) -> None:
        """Unknown scopes are ignored, not refused (OpenID Connect Core 3.1.2.1): each grant
        narrows the request to what the client may have (``Client.get_allowed_scope``)."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)


@dataclass
class OIDCProvider:
    """Everything the OpenID provider needs, wired once per app (``app.extensions``)."""

    issuer: TokenIssuer
    keys: KeyRing
    clients: ClientRegistry
    codes: CodeStore
    tokens: TokenStore
    nonces: NonceStore
    gate: AccessDecisions | None  # the access evaluator; None: every login is blocked
    local_users: LocalUsers | None
    code_ttl: timedelta
    refresh_token_ttl: timedelta
    login_ttl: timedelta
    device_nonce_ttl: timedelta
    agent_port: int
    secure_cookies: bool
    binding: DeviceBinding  # refresh decisions and token lookups on the bound device
    authenticators: dict[str, Authenticator] = field(default_factory=dict)
    device_cert_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    device_cert_header: str = "X-Client-Cert"
    clock: Clock = field(default=lambda: datetime.now(UTC))
    # The ``groups`` claim: the user's directory groups (unwired: an empty list).
    groups_of: GroupsReader | None = None
    # The SSO session (posture_gateway.sso); None: every authorize asks for credentials.
    sessions: SessionStore | None = None
    session_cookie: str = "posture_sso"
    session_lifetime: timedelta = timedelta(hours=12)
    # Told every blocking login / refresh decision: stale posture ends the device's sessions
    # and tokens (posture_gateway.sso.stale). None: nothing beyond the refused request.
    on_block: Callable[[Decision], object] | None = None
    server: GatewayAuthorizationServer = field(init=False)

    def __post_init__(self) -> None:
        for name in ("issuer", "keys", "clients", "codes", "tokens", "nonces"):
            if getattr(self, name) is None:
                raise ValueError(f"OIDCProvider needs {name}")
        self.server = GatewayAuthorizationServer(self)

    def now(self) -> datetime:
        return self.clock()

    def subject_bound(self, subject: GrantSubject) -> bool:
        """Whether tokens of ``subject`` may still be used (defence in depth behind the
        revocation done with a quarantine / retirement / wipe): machine clients always; a user
        token only while its device and user are trusted (:meth:`DeviceBinding.still_bound`).
        A storage error propagates (the views answer 503); any other error is "no"."""
        if subject.machine:
            return True
        try:
            return bool(self.binding.still_bound(subject))
        except SQLAlchemyError:
            raise
        except Exception:
            log.exception("could not check the device binding of a token; treating it as inactive")
            return False

    def blocked(self, decision: Decision) -> None:
        """Tell :attr:`on_block` about a blocking decision (its failure is logged: the
        request is refused anyway)."""
        if self.on_block is None:
            return
        try:
            self.on_block(decision)
        except Exception:
            log.exception("reacting to a blocking decision failed")

    def init_app(self, app: Flask) -> None:
        server = self.server
        server.init_app(app, query_client=self.clients.get, save_token=self._save_token)
        server.scopes_supported = list(SUPPORTED_SCOPES)
        server.register_token_generator("default", self._generate_token)
        server.register_grant(_CodeGrant, [S256Required(), _OpenIDCode(self)])
        server.register_grant(_RefreshGrant)
        server.register_endpoint(_Introspection)
        server.register_endpoint(_Revocation)

    # ---- tokens -------------------------------------------------------------------------

    def released_claims(
        self, subject: GrantSubject, scope: str, posture: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Profile, directory and posture claims of an ID token for ``subject`` and ``scope``
        (``posture`` defaults to the login's); only claims of the one definition
        (:mod:`posture_gateway.oidc.claims`) are released."""
        return token_claims(
            scope,
            user_id=subject.user_id,
            profile=subject.profile,
            posture=subject.posture if posture is None else posture,
            groups=self.groups_of,
        )

    def _generate_token(
        self,
        grant_type: str,
        client: Client,
        user: GrantSubject | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        assert user is not None and scope is not None
        issued = self.issuer.access_token(
            subject=user.user_id, client_id=client.client_id, scope=scope
        )
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": issued.token,
            "expires_in": int(self.issuer.access_token_ttl.total_seconds()),
            "scope": scope,
        }
        if include_refresh_token:
            token["refresh_token"] = secrets.token_urlsafe(48)
        if grant_type == "refresh_token" and "openid" in scope.split():
            # OIDC Core 12.2: a fresh ID token for the same login (same sub, auth_time, acr,
            # amr), without a nonce; the posture claims are the refresh decision's own
            # (``user`` is the subject _RefreshGrant.authenticate_user rebuilt from it).
            token["id_token"] = self.issuer.id_token(
                subject=user.user_id,
                audience=client.client_id,
                nonce=None,
                auth_time=user.auth_time,
                acr=user.acr or None,
                amr=user.amr,
                extra_claims={
                    **self.released_claims(user, scope),
                    **({"sid": user.sid} if user.sid else {}),
                },
                alg=client.id_token_signed_response_alg,
                access_token=issued.token,
            )
        return token

    def _save_token(self, token: Mapping[str, Any], request: OAuth2Request) -> None:
        # We minted this access token a moment ago; read its jti/iat/exp back unverified.
        claims = _own_payload(token["access_token"])
        issued_at = datetime.fromtimestamp(claims["iat"], UTC)
        refresh = token.get("refresh_token")
        if request.authorization_code is not None:
            code: _Code = request.authorization_code
            subject, family, code_hash = (
                code.record.subject,
                secrets.token_hex(16),
                code.record.code_hash,
            )
            refresh_expires = issued_at + self.refresh_token_ttl
        else:
            previous: IssuedToken = request.refresh_token
            # The refreshed subject: the login's, with the posture just evaluated.
            subject, family, code_hash = request.user, previous.record.family_id, None
            # Rotation keeps the family's absolute lifetime: a new login re-checks the device.
            refresh_expires = previous.record.refresh_expires_at or issued_at
        self.tokens.save(
            TokenRecord(
                id=claims["jti"],
                client_id=request.client.client_id,
                scope=token["scope"],
                subject=subject,
                family_id=family,
                issued_at=issued_at,
                access_expires_at=datetime.fromtimestamp(claims["exp"], UTC),
                refresh_token_hash=digest(refresh) if refresh else None,
                refresh_expires_at=refresh_expires if refresh else None,
                code_hash=code_hash,
            )
        )

    def lookup_token(
        self,
        token: str,
        hint: str | None = None,
        *,
        verify_exp: bool = True,
        check_binding: bool = True,
    ) -> IssuedToken | None:
        """The issuance behind an access or refresh token we were shown, or None.

        An access token must verify (signature with our key and alg, typ, iss, aud); a token
        that does not is unknown, which introspection reports as inactive. With
        ``check_binding`` a live token whose device or user is no longer trusted comes back
        ``unbound`` (inactive).
        """
        found = self._lookup(token, hint, verify_exp=verify_exp)
        if found is None or not check_binding or found.is_revoked() or found.is_expired():
            return found
        if not self.subject_bound(found.record.subject):
            return replace(found, unbound=True)
        return found

    def _lookup(self, token: str, hint: str | None, *, verify_exp: bool) -> IssuedToken | None:
        now = self.now()
        order = (
            ("refresh_token", "access_token")
            if hint == "refresh_token"
            else ("access_token", "refresh_token")
        )
        for kind in order:
            if kind == "access_token":
                try:
                    claims = self.issuer.verify_access_token(token)
                except TokenRejected as rejected:
                    if rejected.reason != "expired" or verify_exp:
                        continue
                    claims = jwt.decode(token, options={"verify_signature": False})
                record = self.tokens.get(str(claims["jti"]))
                if record is not None:
                    return IssuedToken(kind, record, now, claims)
            else:
                record = self.tokens.find_by_refresh(digest(token))
                if record is not None:
                    return IssuedToken(kind, record, now)
        return None

    def bearer_token(self, token: str) -> IssuedToken:
        """Validate a bearer access token for a protected resource (userinfo).

        Raises :class:`TokenRejected` (reason ``revoked``/``unknown`` besides the JWT ones).
        """
        claims = self.issuer.verify_access_token(token)
        record = self.tokens.get(str(claims["jti"]))
        if record is None:
            raise TokenRejected("unknown", "no such issuance")
        issued = IssuedToken("access_token", record, self.now(), claims)
        if issued.is_revoked():
            raise TokenRejected("revoked")
        if issued.is_expired():
            raise TokenRejected("expired")
        if not self.subject_bound(record.subject):
            raise TokenRejected("inactive", "the device or user is no longer trusted")
        return issued
