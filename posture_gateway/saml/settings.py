"""Settings of the SAML 2.0 IdP: the ``saml`` section of the gateway ``Settings``.

Absent (the default), the gateway has no SAML IdP: ``/saml/*`` answers 404. Present, it names
the IdP's entity id (default ``{public_url}/saml/metadata``), the service providers (each a
metadata file plus the options our side decides: IdP-initiated logins, signed requests, Okta
"factor only" mode, the NameID we send, how a Subject names a directory user) and upstream
SAML IdPs offered on the login page. Read once at start; the metadata files are parsed in full
when the app starts (:mod:`posture_gateway.saml.setup`), so a bad file stops start-up with
``saml.service_providers[i]: <file>: what is wrong``. Environment example:
``POSTURE_SAML__ENTITY_ID=https://gw.example.com/saml/metadata``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from pydantic import ConfigDict, Field, model_validator

from idp_connectors.identity import IdentityLinking
from mdm_core.support.durations import DurationsModel
from posture_gateway.saml.protocol.service_providers import ServiceProviderConfig

__all__ = [
    "SAMLSettings",
    "SamlServiceProviderSettings",
    "SamlUpstreamIdpSettings",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


class _Strict(DurationsModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamlServiceProviderSettings(ServiceProviderConfig):
    """One service provider: its metadata file plus our options for it — the protocol
    layer's :class:`~posture_gateway.saml.protocol.service_providers.ServiceProviderConfig`
    (signatures, encryption, NameID, ``allow_idp_initiated``, ``require_signed_requests``,
    ``okta_factor``, attribute names, assertion lifetime) and what the flow adds: the name the
    login page shows and how a factor-only Subject names a directory user. The SP's entity id
    (from its metadata) is the access policies' application id."""

    # SAML metadata of the SP (an EntityDescriptor with an SPSSODescriptor); its entity id,
    # AssertionConsumerService URLs and signing certificates are the only ones trusted.
    metadata_file: Path
    # Shown on the login page ("Sign in to ..."); default: the entity id.
    name: str | None = None
    # How a Subject NameID of this SP (okta_factor) names a directory user the first time
    # (idp_connectors.identity.IdentityLinking; `link_by: username` takes it as our username).
    linking: IdentityLinking = Field(default_factory=IdentityLinking)


class SamlUpstreamIdpSettings(_Strict):
    """An upstream SAML IdP offered on the login page (broker mode, like an upstream OIDC
    provider): we send it a signed AuthnRequest and verify its Response."""

    # Stable id used in URLs (/saml/upstream/<name>/acs) and on the login page's button.
    name: str
    label: str | None = None
    # Its IdP metadata (entity id, SSO URL, signing certificates).
    metadata_file: Path
    # How its NameID (or the attribute below) names a directory user the first time.
    linking: IdentityLinking = Field(default_factory=IdentityLinking)
    # An attribute of its assertion carrying the username (default: the NameID).
    username_attribute: str | None = None
    email_attribute: str | None = None

    @model_validator(mode="after")
    def _name_is_a_slug(self) -> SamlUpstreamIdpSettings:
        if not _NAME.match(self.name):
            raise ValueError(f"name {self.name!r}: lower-case letters, digits and -, at most 32")
        return self


class SAMLSettings(_Strict):
    """The ``saml`` section: our IdP's entity id, its service providers, upstream IdPs."""

    # Our entity id (the Issuer of every Response); default {public_url}/saml/metadata.
    entity_id: str | None = None
    service_providers: tuple[SamlServiceProviderSettings, ...] = ()
    upstream_idps: tuple[SamlUpstreamIdpSettings, ...] = ()
    # An AuthnRequest older than this (IssueInstant) is refused; its ID is remembered this
    # long (plus clock_skew) so it cannot be replayed.
    request_max_age: timedelta = Field(default=timedelta(minutes=5), gt=timedelta(0))
    # How far in the future an AuthnRequest's IssueInstant may be (the SP's clock ahead).
    clock_skew: timedelta = Field(default=timedelta(seconds=90), ge=timedelta(0))
    # Longest RelayState accepted, in bytes (SAML bindings 3.4.3 promise 80; real SPs send
    # more). A longer one is refused, never truncated.
    max_relay_state: int = Field(default=1024, ge=80, le=4096)

    @model_validator(mode="after")
    def _unique_upstream_names(self) -> SAMLSettings:
        names = [u.name for u in self.upstream_idps]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"upstream_idps: duplicate names {duplicated}")
        files = [str(sp.metadata_file) for sp in self.service_providers]
        twice = sorted({f for f in files if files.count(f) > 1})
        if twice:
            raise ValueError(f"service_providers: one metadata file named twice: {twice}")
        return self
