"""Registers the identity-provider integrations on an app: their state, the posture-API
grant on the OpenID provider, and their blueprints (posture API, Okta hook, Entra EAM,
upstream login callbacks, ``/openapi.json``).

Kept apart from :mod:`posture_gateway.integrations.state` (the state the integration views
read) so that the views import the state and this module imports the views, one way. The
state and every service in it are built beforehand (:mod:`posture_gateway.wiring`).
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from posture_gateway.api import openapi
from posture_gateway.integrations import entra_eam, okta_hook, posture_api, upstream_login
from posture_gateway.integrations.posture_api_grant import machine_grant, posture_api_scopes
from posture_gateway.integrations.state import IntegrationsState, install
from posture_gateway.oidc.server import OIDCProvider

__all__ = ["register"]


def register(
    app: Flask,
    st: IntegrationsState,
    provider: OIDCProvider,
    *,
    machine_scopes: Mapping[str, tuple[str, ...]] | None = None,
) -> None:
    """Install ``st`` on ``app``, offer the one client-credentials grant to the posture API's
    OAuth clients plus ``machine_scopes`` (other features' machine clients, e.g. Shared
    Signals receivers), and register the integration blueprints. One call from the app
    factory."""
    install(app, st)
    scopes: dict[str, tuple[str, ...]] = {}
    for source in (posture_api_scopes(st.settings.posture_api), machine_scopes or {}):
        for client, granted in source.items():
            scopes[client] = (*scopes.get(client, ()), *granted)
    if scopes:
        provider.server.register_grant(machine_grant(scopes))
    for blueprint in (posture_api.bp, okta_hook.bp, entra_eam.bp, upstream_login.bp, openapi.bp):
        app.register_blueprint(blueprint)
