"""Wires the identity-provider integrations into an app: their state, the posture-API grant,
the upstream authenticators on the login page, and their blueprints (posture API, Okta hook,
Entra EAM, upstream login callbacks, ``/openapi.json``).

Kept apart from :mod:`posture_gateway.integrations.state` (the state and the seams the integration
views read) so that the views import the state and this module imports the views, one way.
"""

from __future__ import annotations

import httpx
from flask import Flask

from posture_gateway.api import openapi
from posture_gateway.integrations import entra_eam, okta_hook, posture_api, upstream_login
from posture_gateway.integrations.posture_api_grant import posture_decide_grant
from posture_gateway.integrations.settings import IntegrationSettings
from posture_gateway.integrations.state import IntegrationsState, init_app
from posture_gateway.oidc.server import EXTENSION_KEY as OIDC_EXTENSION_KEY
from posture_gateway.oidc.server import OIDCProvider

__all__ = ["register"]


def register(
    app: Flask,
    settings: IntegrationSettings,
    *,
    public_url: str,
    transport: httpx.BaseTransport | None = None,
) -> IntegrationsState:
    """``init_app`` plus the blueprints: posture API, Okta hook, Entra EAM, upstream login
    callbacks, and ``/openapi.json``. One call from the app factory."""
    st = init_app(app, settings, public_url=public_url, transport=transport)
    provider = app.extensions.get(OIDC_EXTENSION_KEY)
    if isinstance(provider, OIDCProvider) and settings.posture_api.oauth_clients:
        provider.server.register_grant(posture_decide_grant(settings.posture_api))
    if isinstance(provider, OIDCProvider):  # offer each upstream on the login page
        for name, upstream in st.upstreams.items():
            provider.authenticators[f"upstream-{name}"] = upstream_login.UpstreamAuthenticator(
                upstream
            )
    for blueprint in (posture_api.bp, okta_hook.bp, entra_eam.bp, upstream_login.bp, openapi.bp):
        app.register_blueprint(blueprint)
    return st
