"""The SAML IdP, built and registered: :func:`build_idp` and :func:`register`.

:func:`build_idp` runs in :func:`posture_gateway.wiring.build_services`, after the OpenID
provider (whose key ring signs our Responses: one key ring, one certificate to publish). It
loads every SP metadata file in full (``saml.service_providers[i]: <file>: what is wrong``
stops start-up), makes sure the ring has an RS256 key, and builds the replay guard and the
directory seam for factor-only Subjects; :func:`build_upstreams` (before the OpenID provider,
whose login-page authenticators they are) the upstream SAML IdPs. :func:`register` installs
the IdP, the SAML login front end (:class:`posture_gateway.saml.flow.SamlFrontEnd`), the
upstreams and the blueprints; without a ``saml`` section ``/saml/*`` answers 404 and nothing
else is installed.
"""

from __future__ import annotations

from flask import Flask

from mdm_core.runtime import MdmCore
from posture_gateway.directory.identity import DirectoryUserResolver
from posture_gateway.login.front_ends import install as install_front_end
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.saml.flow import FRONT_END, SamlFrontEnd
from posture_gateway.saml.idp import EXTENSION_KEY, SamlIdp
from posture_gateway.saml.protocol.errors import MetadataError
from posture_gateway.saml.protocol.service_providers import ServiceProviderRegistry
from posture_gateway.saml.protocol.signing import SamlSigner
from posture_gateway.saml.replay import RequestReplayGuard
from posture_gateway.saml.upstream import SamlUpstream, load_upstreams
from posture_gateway.saml.upstream import bp as upstream_bp
from posture_gateway.saml.upstream import install as install_upstreams
from posture_gateway.saml.views import METADATA_PATH, SSO_PATH
from posture_gateway.saml.views import bp as saml_bp
from posture_gateway.settings import ConfigError, Settings
from posture_gateway.signing.key_ring import KeyRingError

__all__ = ["build_idp", "build_upstreams", "entity_id_of", "register"]


def entity_id_of(settings: Settings) -> str:
    """Our entity id: ``saml.entity_id``, default ``{public_url}/saml/metadata``."""
    configured = settings.saml.entity_id if settings.saml else None
    return configured or settings.public_url.rstrip("/") + METADATA_PATH


def build_upstreams(
    settings: Settings, core: MdmCore, replay: RequestReplayGuard
) -> dict[str, SamlUpstream]:
    """The upstream SAML IdPs (``saml.upstream_idps``), offered on the login page; built
    before the OpenID provider, whose authenticators they are (raises ``ConfigError``)."""
    cfg = settings.saml
    if cfg is None or not cfg.upstream_idps:
        return {}
    return load_upstreams(
        cfg.upstream_idps,
        public_url=settings.public_url,
        replay=replay,
        directory_for=lambda rules: DirectoryUserResolver(core.storage, rules=rules),
        max_skew=cfg.clock_skew,
    )


def build_idp(
    settings: Settings,
    core: MdmCore,
    provider: OIDCProvider,
    *,
    replay: RequestReplayGuard,
    upstreams: dict[str, SamlUpstream],
) -> SamlIdp | None:
    """The SAML IdP the settings describe, or None without a ``saml`` section. Raises
    ``ConfigError`` naming the SP entry and file for any metadata or key problem."""
    cfg = settings.saml
    if cfg is None:
        return None
    entries = []
    for i, sp in enumerate(cfg.service_providers):
        try:
            one = ServiceProviderRegistry.from_files([(sp.metadata_file, sp)])
        except MetadataError as exc:
            raise ConfigError(f"saml.service_providers[{i}]: {exc}") from exc
        entries.append((sp, next(iter(one))))
    try:
        registry = ServiceProviderRegistry([provider_ for _, provider_ in entries])
    except MetadataError as exc:
        raise ConfigError(f"saml.service_providers: {exc}") from exc
    try:
        provider.keys.ensure("RS256")
    except KeyRingError as exc:
        raise ConfigError(f"saml: the key ring has no RSA signing key: {exc}") from exc
    signer = SamlSigner(provider.keys)
    rules = {sp.entity_id: conf.linking for conf, sp in entries}
    return SamlIdp(
        entity_id=entity_id_of(settings),
        sso_url=settings.public_url.rstrip("/") + SSO_PATH,
        settings=cfg,
        registry=registry,
        signer=signer,
        replay=replay,
        directory=DirectoryUserResolver(core.storage, rules=rules),
        login_ttl=provider.login_ttl,
        names={sp.entity_id: conf.name for conf, sp in entries if conf.name},
        upstreams=upstreams,
    )


def register(app: Flask, idp: SamlIdp | None) -> None:
    """Install ``idp`` and the SAML front end of the login pages; register the blueprint."""
    if idp is not None:
        app.extensions[EXTENSION_KEY] = idp
        install_front_end(app, FRONT_END, SamlFrontEnd())
    install_upstreams(app, idp.upstreams if idp is not None else {})  # none: every name 404s
    app.register_blueprint(saml_bp)
    app.register_blueprint(upstream_bp)
