"""Registers the identity-provider integrations on an app: their state, the posture-API
grant on the OpenID provider, and their blueprints (posture API, Okta hook, Entra EAM,
upstream login callbacks, ``/openapi.json``).

Kept apart from :mod:`posture_gateway.integrations.state` (the state the integration views
read) so that the views import the state and this module imports the views, one way. The
state and every service in it are built beforehand (:mod:`posture_gateway.wiring`).
"""

from __future__ import annotations

from flask import Flask

from posture_gateway.api import openapi
from posture_gateway.integrations import entra_eam, okta_hook, posture_api, upstream_login
from posture_gateway.integrations.posture_api_grant import posture_decide_grant
from posture_gateway.integrations.state import IntegrationsState, install
from posture_gateway.oidc.server import OIDCProvider

__all__ = ["register"]


def register(app: Flask, st: IntegrationsState, provider: OIDCProvider) -> None:
    """Install ``st`` on ``app``, offer the posture-API grant to its OAuth clients, and
    register the integration blueprints. One call from the app factory."""
    install(app, st)
    if st.settings.posture_api.oauth_clients:
        provider.server.register_grant(posture_decide_grant(st.settings.posture_api))
    for blueprint in (posture_api.bp, okta_hook.bp, entra_eam.bp, upstream_login.bp, openapi.bp):
        app.register_blueprint(blueprint)
