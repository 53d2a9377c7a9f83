"""The composition root's build step: every service of the gateway, made once, in order.

:func:`build_services` runs before any blueprint is registered; every service gets the real
collaborators it needs in its constructor, so nothing is installed as a placeholder and
swapped later, and no view looks a service up with a fallback. The order, each step using
only what the steps before it made:

1. the stores shared by every front end: the single-use nonce store (device checks, warn
   tickets, posture-API decisions) and the one login transaction store
   (:mod:`posture_gateway.login.transactions`);
2. the decision pipeline: the one access evaluator over the core
   (:func:`mdm_core.access.wiring.evaluator_for`; the browser login, Entra EAM, the posture API,
   the Okta hook and what-if ask it), the refresh-time :class:`PolicyDeviceBinding` on it, and
   the directory resolver of outside identities;
3. broker mode's upstream OpenID providers (on the one outbound HTTP client) and upstream
   SAML IdPs, offered on the login page as authenticators;
4. the OpenID provider (key ring, token issuer, clients, local users, grant stores);
5. the integrations state over the provider's gate, nonces, keys and access tokens, with the
   login flow's continuation for upstream sign-ins and the Entra EAM ID token issuer;
6. the SAML IdP (when ``saml`` is configured) over the provider's key ring: its service
   providers, signer, AuthnRequest replay guard (:func:`posture_gateway.saml.setup.build_idp`).
7. the Shared Signals transmitter (:mod:`posture_gateway.signals`) over the provider's keys
   and access tokens, its outbox listener registered on the core's storage.

:func:`posture_gateway.app.create_app` calls it, then installs and registers.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from idp_connectors.http import make_client
from mdm_core.access.evaluator import AccessEvaluator
from mdm_core.access.wiring import evaluator_for
from mdm_core.policy.decision_cache import DecisionCache
from mdm_core.read_model.evaluator_ports import (
    CachedAccessState,
    CachedLoginProofs,
    GroupCommitDecisionAudit,
)
from mdm_core.read_model.warm import cache_entries_for
from mdm_core.read_model.wiring import read_model_of
from mdm_core.redis_backends.client import connect_redis
from mdm_core.runtime import MdmCore
from posture_gateway.access.device_gate import PolicyDeviceBinding, log_observer
from posture_gateway.access.nonces import NonceStore
from posture_gateway.access.read_model import CachedBearerTokens, CachedUserDirectory
from posture_gateway.directory.identity import DirectoryUserResolver
from posture_gateway.hr.setup import build as build_hr
from posture_gateway.hr.state import HrState
from posture_gateway.integrations.entra_eam import eam_token_issuer
from posture_gateway.integrations.state import IntegrationsState, build_upstreams
from posture_gateway.integrations.state import build as build_integrations
from posture_gateway.integrations.upstream_login import upstream_authenticators
from posture_gateway.login.transactions import LoginTransactionStore, build_store
from posture_gateway.oidc.login import complete_authentication
from posture_gateway.oidc.redis_nonces import RedisNonceStore
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.oidc.setup import build_provider
from posture_gateway.oidc.sql_nonces import SqlNonceStore
from posture_gateway.saml.idp import SamlIdp
from posture_gateway.saml.replay import RequestReplayGuard
from posture_gateway.saml.setup import build_idp
from posture_gateway.saml.setup import build_upstreams as build_upstreams_saml
from posture_gateway.saml.upstream import authenticators as saml_authenticators
from posture_gateway.settings import Settings
from posture_gateway.signals.setup import build as build_signals
from posture_gateway.signals.state import SignalsState

__all__ = ["GatewayServices", "build_services"]


@dataclass(frozen=True)
class GatewayServices:
    """What the app factory installs: the one access evaluator, the OpenID provider (with the
    evaluator as its gate, its binding, nonce store), the one login transaction store, and the
    integrations state, and the SAML IdP (None without a ``saml`` section)."""

    access: AccessEvaluator
    provider: OIDCProvider
    login_transactions: LoginTransactionStore
    integrations: IntegrationsState
    signals: SignalsState
    saml: SamlIdp | None = None
    hr: HrState | None = None  # the HR webhooks (posture_gateway/hr); None only in tests


def build_services(
    settings: Settings, core: MdmCore, *, transport: httpx.BaseTransport | None = None
) -> GatewayServices:
    """Build every gateway service over ``core`` (raises ``ConfigError`` on bad settings).
    ``transport`` replaces the outbound HTTP transport (tests of broker mode and Entra)."""
    database = core.database
    # Nonces on Redis when configured (no database write per nonce), else the shared table.
    nonces: NonceStore = (
        RedisNonceStore(connect_redis(settings.redis_url))
        if settings.redis_url
        else SqlNonceStore(database)
    )
    transactions = build_store(database, settings.redis_url)

    # The read model: the decision's state served from a version-checked in-process cache
    # (one statement when warm), its audit by group commit (still durable before the answer).
    # Sized to hold the devices each served worker warms at start (access/warm_start.py).
    model = read_model_of(core, max_entries=cache_entries_for(settings.read_model.warm_devices))
    access = evaluator_for(
        core,
        state=CachedAccessState(model.reads),
        audit=GroupCommitDecisionAudit(model.audit),
        observers=(log_observer,),
        cache=DecisionCache(),  # per process; an entry is used only when every input is equal
        proofs=CachedLoginProofs(core.proofs, model.reads),  # identities version-checked
    )
    binding = PolicyDeviceBinding(access, core.storage)  # refresh + token lookups
    directory = CachedUserDirectory(
        DirectoryUserResolver.from_settings(core.storage, settings.integrations),
        core.storage,
        model.cache,
    )

    integration_settings = settings.integrations
    http = make_client(transport, timeout=integration_settings.outbound_timeout.total_seconds())
    upstreams = build_upstreams(integration_settings, public_url=settings.public_url, http=http)

    try:
        # SAML: AuthnRequest ids and upstream assertion ids are spent once, in every process.
        saml_replay = RequestReplayGuard.for_deployment(database, settings.redis_url)
        saml_upstreams = build_upstreams_saml(settings, core, saml_replay)
        provider = build_provider(
            settings,
            core,
            gate=access,
            binding=binding,
            nonces=nonces,
            authenticators={
                **upstream_authenticators(upstreams),
                **saml_authenticators(saml_upstreams),
            },
        )
    except BaseException:
        http.close()
        raise
    access_tokens = CachedBearerTokens(provider, core.storage, model.cache)
    integrations = build_integrations(
        integration_settings,
        public_url=settings.public_url,
        http=http,
        upstreams=upstreams,
        provider=provider,
        evaluator=access,
        user_directory=directory,
        access_tokens=access_tokens,
        complete_authentication=complete_authentication,
        entra_tokens=eam_token_issuer(
            integration_settings.entra, provider.keys, public_url=settings.public_url
        )
        if integration_settings.entra
        else None,
    )
    # The SAML IdP, then the Shared Signals transmitter: its outbox listener is registered
    # on the core's storage here, so every unit of work from now on queues the SETs its
    # events cause.
    try:
        saml = build_idp(settings, core, provider, replay=saml_replay, upstreams=saml_upstreams)
        signals = build_signals(settings, core, provider, access_tokens)
        hr = build_hr(settings.hr, core)  # HR webhooks -> core.offboarding
    except BaseException:
        integrations.close()  # closes the shared HTTP client too
        raise
    return GatewayServices(
        access=access,
        provider=provider,
        login_transactions=transactions,
        integrations=integrations,
        saml=saml,
        signals=signals,
        hr=hr,
    )
