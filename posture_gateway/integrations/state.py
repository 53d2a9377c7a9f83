"""Per-app state of the IdP integrations: :class:`IntegrationsState` and :func:`build`.

:class:`IntegrationsState` (in ``app.extensions["posture_integrations"]``) holds what the posture
API, the Okta hook, Entra EAM and broker mode need: the one access evaluator, the
:class:`UserDirectory`, the verifier of our access tokens, the nonce store, the signing key
ring, the outbound HTTP client, the Entra hint validator and ID token issuer, the upstream IdPs
and the login flow's continuation. Every service is built before the state (the app factory
passes them in, :mod:`posture_gateway.wiring`): nothing is installed later, and there is no
fallback to look up at request time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from flask import Flask, current_app
from flask.typing import ResponseReturnValue

from idp_connectors.entra import EntraHintValidator
from idp_connectors.identity import UserDirectory
from idp_connectors.oidc_upstream import OidcUpstream
from mdm_core.access.evaluator import AccessDecisions
from posture_gateway.access.nonces import NonceStore
from posture_gateway.integrations.settings import IntegrationSettings
from posture_gateway.oidc.authn import AuthenticatedUser
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.oidc.tokens import TokenIssuer
from posture_gateway.signing.key_ring import KeyRing

__all__ = [
    "AccessTokenVerifier",
    "IntegrationsState",
    "CompleteAuthentication",
    "build_upstreams",
    "build",
    "install",
    "integrations",
    "EXTENSION_KEY",
]

EXTENSION_KEY = "posture_integrations"


class AccessTokenVerifier(Protocol):
    """Verifies an access token the gateway's own OP issued (``TokenIssuer`` satisfies it)."""

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """The token's claims; raises on any invalid, expired or foreign token."""
        ...


class CompleteAuthentication(Protocol):
    """The login flow's continuation once an authenticator knows the user."""

    def __call__(self, user: AuthenticatedUser, *, login_id: str) -> ResponseReturnValue: ...


@dataclass
class IntegrationsState:
    """Every service the integration views use, each built once before the app serves."""

    settings: IntegrationSettings
    public_url: str
    http: httpx.Client
    executor: ThreadPoolExecutor
    #: The one access evaluator (posture API, Okta hook, Entra EAM), the login's own.
    evaluator: AccessDecisions
    user_directory: UserDirectory
    nonces: NonceStore
    access_tokens: AccessTokenVerifier
    signing_keys: KeyRing
    #: The audience device login proofs are bound to: the OP issuer (as on the login page).
    device_proof_audience: str
    #: The loopback port of the local agent (the same agent as the browser login's).
    agent_port: int
    #: The login flow's continuation once an upstream IdP vouched for the user (broker mode).
    complete_authentication: CompleteAuthentication
    entra: EntraHintValidator | None = None
    #: The Entra EAM issuer's ID tokens (on ``signing_keys``); None when Entra is not set up.
    entra_tokens: TokenIssuer | None = None
    upstreams: dict[str, OidcUpstream] = field(default_factory=dict)

    def nonce_store(self) -> NonceStore:
        """The nonce store (the OIDC provider's: one store for every channel)."""
        return self.nonces

    def token_verifier(self) -> AccessTokenVerifier:
        """The verifier of our own access tokens."""
        return self.access_tokens

    def close(self) -> None:
        """Release the outbound connections and the worker pool (app shutdown, tests)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.http.close()


def build_upstreams(
    settings: IntegrationSettings, *, public_url: str, http: httpx.Client
) -> dict[str, OidcUpstream]:
    """One upstream OpenID provider per configured broker-mode upstream, by name."""
    base = public_url.rstrip("/")
    return {
        up.name: OidcUpstream(
            up, redirect_uri=f"{base}/login/upstream/{up.name}/callback", http=http
        )
        for up in settings.upstreams
    }


def build(
    settings: IntegrationSettings,
    *,
    public_url: str,
    http: httpx.Client,
    upstreams: dict[str, OidcUpstream],
    provider: OIDCProvider,
    evaluator: AccessDecisions,
    user_directory: UserDirectory,
    access_tokens: AccessTokenVerifier,
    complete_authentication: CompleteAuthentication,
    entra_tokens: TokenIssuer | None,
) -> IntegrationsState:
    """The integrations state over already-built services: the one access evaluator, the
    provider's nonce store,
    key ring and access tokens (the same as the browser login's), and a bounded worker pool
    for work that must finish inside a caller's budget (Okta: 3 s)."""
    return IntegrationsState(
        settings=settings,
        public_url=public_url.rstrip("/"),
        http=http,
        executor=ThreadPoolExecutor(max_workers=8, thread_name_prefix="posture-integrations"),
        evaluator=evaluator,
        user_directory=user_directory,
        nonces=provider.nonces,
        access_tokens=access_tokens,
        signing_keys=provider.keys,
        device_proof_audience=provider.issuer.issuer,
        agent_port=provider.agent_port,
        complete_authentication=complete_authentication,
        entra=EntraHintValidator(settings.entra.hint, http=http) if settings.entra else None,
        entra_tokens=entra_tokens,
        upstreams=upstreams,
    )


def install(app: Flask, st: IntegrationsState) -> None:
    """Keep ``st`` as ``app``'s integrations state (read by :func:`integrations`)."""
    app.extensions[EXTENSION_KEY] = st


def integrations(app: Flask | None = None) -> IntegrationsState:
    """The integrations state of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    st = target.extensions[EXTENSION_KEY]
    assert isinstance(st, IntegrationsState)
    return st
