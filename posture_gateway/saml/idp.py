"""The SAML IdP service: everything the SAML views and flow need, built once at start.

:class:`SamlIdp` holds our entity id and SSO URL, the service provider registry (metadata +
our options, :mod:`posture_gateway.saml.protocol.service_providers`), the signer over the
gateway's key ring (the RSA key the OpenID provider publishes), the AuthnRequest replay guard,
the directory seam that maps an Okta factor-only Subject to one of our users, and the limits
of the ``saml`` settings. It is made by :func:`posture_gateway.saml.setup.build_idp` and kept
in ``app.extensions`` (:func:`current_idp`); nothing in it changes after start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app

from idp_connectors.identity import UserDirectory
from posture_gateway.saml.protocol.service_providers import (
    ServiceProvider,
    ServiceProviderRegistry,
)
from posture_gateway.saml.protocol.signing import SamlSigner
from posture_gateway.saml.replay import RequestReplayGuard
from posture_gateway.saml.settings import SAMLSettings
from posture_gateway.saml.upstream import SamlUpstream

__all__ = ["EXTENSION_KEY", "SamlIdp", "current_idp", "saml_configured"]

EXTENSION_KEY = "posture_saml_idp"


@dataclass(frozen=True)
class SamlIdp:
    """Our SAML identity provider (see the module docstring)."""

    entity_id: str
    sso_url: str
    settings: SAMLSettings
    registry: ServiceProviderRegistry
    signer: SamlSigner
    replay: RequestReplayGuard
    directory: UserDirectory
    login_ttl: timedelta
    #: Display names by SP entity id (``saml.service_providers[].name``).
    names: dict[str, str] = field(default_factory=dict)
    #: Upstream SAML IdPs by name (broker mode; their authenticators are the provider's).
    upstreams: dict[str, SamlUpstream] = field(default_factory=dict)

    def provider(self, entity_id: str) -> ServiceProvider | None:
        """The registered SP ``entity_id``, or None."""
        return self.registry.get(entity_id)

    def name_of(self, sp: ServiceProvider) -> str:
        return self.names.get(sp.entity_id) or sp.entity_id

    @property
    def want_signed_requests(self) -> bool:
        """Metadata's ``WantAuthnRequestsSigned``: every registered SP must sign."""
        return len(self.registry) > 0 and all(sp.requires_signed_requests for sp in self.registry)


def saml_configured() -> bool:
    """Whether this app has a SAML IdP (the ``saml`` section was set)."""
    return EXTENSION_KEY in current_app.extensions


def current_idp() -> SamlIdp:
    """The app's SAML IdP (call :func:`saml_configured` first)."""
    idp: SamlIdp = current_app.extensions[EXTENSION_KEY]
    return idp
