"""Per-app state of the IdP integrations and its ``init_app``.

:class:`IntegrationsState` (in ``app.extensions["posture_integrations"]``) holds what the posture
API, the Okta hook, Entra EAM and broker mode need: the access evaluator, the
:class:`UserDirectory`, the verifier of our access tokens, the nonce store,
the token issuer, the outbound HTTP client, the Entra hint validator and the upstream IdPs.
Seams start *unconfigured* and every unconfigured seam refuses (fail closed); the composition
root replaces them (``integrations(app).evaluator = ...``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from flask import Flask, current_app
from flask.typing import ResponseReturnValue

from idp_connectors.entra import EntraHintValidator
from idp_connectors.http import make_client
from idp_connectors.identity import ExternalIdentity, UserDirectory
from idp_connectors.oidc_upstream import OidcUpstream
from mdm_core.access.evaluator import AccessDecisions
from posture_gateway.access.nonces import InProcessNonceStore, NonceStore
from posture_gateway.integrations.settings import IntegrationSettings
from posture_gateway.oidc.authn import AuthenticatedUser
from posture_gateway.oidc.server import EXTENSION_KEY as OIDC_EXTENSION_KEY
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.signing.key_ring import KeyRing

__all__ = [
    "AccessTokenVerifier",
    "IntegrationsState",
    "CompleteAuthentication",
    "UnconfiguredUserDirectory",
    "init_app",
    "integrations",
    "EXTENSION_KEY",
]

EXTENSION_KEY = "posture_integrations"


class AccessTokenVerifier(Protocol):
    """Verifies an access token the gateway's own OP issued (``TokenIssuer`` satisfies it)."""

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """The token's claims; raises on any invalid, expired or foreign token."""
        ...


class UnconfiguredUserDirectory:
    """Resolves nobody: until the directory is wired every identity is unknown (blocked)."""

    def resolve(self, identity: ExternalIdentity) -> str | None:
        return None


@dataclass
class CompleteAuthentication(Protocol):
    """The login flow's continuation once an authenticator knows the user."""

    def __call__(self, user: AuthenticatedUser, *, login_id: str) -> ResponseReturnValue: ...


class _ProviderBearerTokens:
    """Access tokens of our own OP: signature, type, issuer, audience AND the grant store
    (revoked or unknown issuances are refused), through ``OIDCProvider.bearer_token``."""

    def __init__(self, provider: OIDCProvider) -> None:
        self._provider = provider

    def verify_access_token(self, token: str) -> dict[str, Any]:
        return dict(self._provider.bearer_token(token).claims)


@dataclass
class IntegrationsState:
    """Seams left ``None`` fall back to the OIDC provider's (the same gate, nonce store, key
    ring and tokens as the browser login); without a provider they refuse."""

    settings: IntegrationSettings
    public_url: str
    http: httpx.Client
    executor: ThreadPoolExecutor
    #: The one access evaluator (posture API, Okta hook, Entra EAM); None: the OIDC
    #: provider's; none at all: every request is blocked.
    evaluator: AccessDecisions | None = None
    user_directory: UserDirectory = field(default_factory=UnconfiguredUserDirectory)
    nonces: NonceStore | None = None
    access_tokens: AccessTokenVerifier | None = None
    signing_keys: KeyRing | None = None
    entra: EntraHintValidator | None = None
    # Broker mode: the login flow's ``complete_authentication``; None: the OIDC login's own.
    complete_authentication: CompleteAuthentication | None = None
    upstreams: dict[str, OidcUpstream] = field(default_factory=dict)
    _fallback_nonces: NonceStore = field(default_factory=InProcessNonceStore)

    @staticmethod
    def _provider() -> OIDCProvider | None:
        provider = current_app.extensions.get(OIDC_EXTENSION_KEY)
        return provider if isinstance(provider, OIDCProvider) else None

    def access(self) -> AccessDecisions | None:
        """The access evaluator every integration asks; ``None``: not wired (block)."""
        if self.evaluator is not None:
            return self.evaluator
        provider = self._provider()
        return provider.gate if provider is not None else None

    def nonce_store(self) -> NonceStore:
        if self.nonces is not None:
            return self.nonces
        provider = self._provider()
        return provider.nonces if provider is not None else self._fallback_nonces

    def token_verifier(self) -> AccessTokenVerifier | None:
        if self.access_tokens is not None:
            return self.access_tokens
        provider = self._provider()
        return _ProviderBearerTokens(provider) if provider is not None else None

    def key_ring(self) -> KeyRing | None:
        if self.signing_keys is not None:
            return self.signing_keys
        provider = self._provider()
        return provider.keys if provider is not None else None

    def close(self) -> None:
        """Release the outbound connections and the worker pool (app shutdown, tests)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def device_proof_audience(self) -> str:
        """The audience device login proofs are bound to: the OP issuer (as on the login page)."""
        provider = self._provider()
        return provider.issuer.issuer if provider is not None else self.public_url


def init_app(
    app: Flask,
    settings: IntegrationSettings,
    *,
    public_url: str,
    transport: httpx.BaseTransport | None = None,
) -> IntegrationsState:
    """Build the integrations state for ``app`` (outbound client, Entra validator, upstreams)."""
    http = make_client(transport, timeout=settings.outbound_timeout.total_seconds())
    base = public_url.rstrip("/")
    st = IntegrationsState(
        settings=settings,
        public_url=base,
        http=http,
        # Bounded pool for work that must finish inside a caller's budget (Okta: 3 s).
        executor=ThreadPoolExecutor(max_workers=8, thread_name_prefix="posture-integrations"),
        entra=EntraHintValidator(settings.entra.hint, http=http) if settings.entra else None,
        upstreams={
            up.name: OidcUpstream(
                up, redirect_uri=f"{base}/login/upstream/{up.name}/callback", http=http
            )
            for up in settings.upstreams
        },
    )
    app.extensions[EXTENSION_KEY] = st
    return st


def integrations(app: Flask | None = None) -> IntegrationsState:
    """The integrations state of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    st = target.extensions[EXTENSION_KEY]
    assert isinstance(st, IntegrationsState)
    return st
