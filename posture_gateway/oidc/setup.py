"""The OpenID provider, built and registered: :func:`build_provider` and :func:`register`.

:func:`build_provider` builds everything once at start from the validated settings and the
services the app factory already made (the device gate and binding, the nonce store): the key
ring (loaded or generated, see :mod:`posture_gateway.signing.key_ring`), the token issuer, the
relying parties and local users (their files validated in full: an invalid file stops
start-up with ``file:line``) and the grant stores. The gateway's tables come from the Alembic
chain (``Database.migrate``); nothing is created here. :func:`register` installs the provider,
its protocol and login blueprints and the session cookie flags.
"""

from __future__ import annotations

from flask import Flask

from mdm_core.access.evaluator import AccessDecisions
from mdm_core.ratelimit.guard import RateGuard
from mdm_core.runtime import MdmCore
from mdm_core.storage.credentials import SESSIONS
from posture_gateway.access.nonces import NonceStore
from posture_gateway.login.front_ends import init as init_front_ends
from posture_gateway.login.recheck import bp as recheck_bp
from posture_gateway.oidc.authn import Authenticator
from posture_gateway.oidc.basic_auth_guard import init_app as init_basic_auth_guard
from posture_gateway.oidc.binding import DeviceBinding
from posture_gateway.oidc.claims import directory_groups_reader
from posture_gateway.oidc.clients import load_clients
from posture_gateway.oidc.local_users import FailureLimiter, LoginLimits, load_local_users
from posture_gateway.oidc.login import bp as login_bp
from posture_gateway.oidc.provider import bp as provider_bp
from posture_gateway.oidc.server import EXTENSION_KEY, OIDCProvider
from posture_gateway.oidc.sql_grants import ConnectionTokenRevoker, SqlCodeStore, SqlTokenStore
from posture_gateway.oidc.tokens import TokenIssuer
from posture_gateway.oidc.yamlconf import ConfigFileError
from posture_gateway.settings import ConfigError, Settings
from posture_gateway.signing.key_ring import KeyRing, KeyRingError
from posture_gateway.sso.sql import ConnectionSessionRevoker, SqlSessionStore
from posture_gateway.sso.stale import StaleAccessEnder

__all__ = ["build_provider", "register", "build_key_ring", "issuer_of"]


def issuer_of(settings: Settings) -> str:
    """The issuer identifier: ``oidc.issuer`` or ``public_url``, without a trailing slash."""
    return (settings.oidc.issuer or settings.public_url).rstrip("/")


def build_key_ring(settings: Settings) -> KeyRing:
    """The signing key ring the settings describe (loaded once; raises ``ConfigError``)."""
    oidc = settings.oidc
    passphrase = oidc.key_passphrase.get_secret_value().encode() if oidc.key_passphrase else None
    try:
        if oidc.signing_key_path or oidc.signing_cert_path:
            if not (oidc.signing_key_path and oidc.signing_cert_path):
                raise ConfigError("oidc.signing_key_path and oidc.signing_cert_path go together")
            return KeyRing.from_pem_files(
                oidc.signing_key_path, oidc.signing_cert_path, passphrase=passphrase
            )
        return KeyRing.open(
            settings.data_dir / "oidc-keys",
            passphrase=passphrase,
            dev_mode=settings.dev_mode,
            issuer_name=issuer_of(settings),
        )
    except KeyRingError as exc:
        raise ConfigError(str(exc)) from exc


def build_provider(
    settings: Settings,
    core: MdmCore,
    *,
    gate: AccessDecisions,
    binding: DeviceBinding,
    nonces: NonceStore,
    authenticators: dict[str, Authenticator],
) -> OIDCProvider:
    """The OpenID provider over ``core`` and the given services (raises ``ConfigError``)."""
    oidc = settings.oidc
    try:
        clients = load_clients(oidc.clients_file)
        # One count for every process: the core's shared limiter (Redis, else the database).
        limiter = FailureLimiter(
            RateGuard(core.rate_limiter, core.storage),
            LoginLimits(
                per_source=oidc.max_failed_logins_per_source,
                per_account=oidc.max_failed_logins,
                window=oidc.failed_login_window,
                interval=oidc.slowed_login_interval,
            ),
        )
        local_users = load_local_users(oidc.users_file, limiter)
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from exc
    keys = build_key_ring(settings)
    for alg, client_ids in clients.id_token_algs().items():
        try:
            keys.ensure("ES256" if alg == "ES256" else "RS256")
        except KeyRingError as exc:
            raise ConfigError(f"clients {client_ids} need {alg} ID tokens: {exc}") from exc
    issuer = issuer_of(settings)
    database = core.database
    # Quarantine, revocation, retirement, wipe and account disable revoke tokens in their own
    # unit of work (mdm_core.domain.device_lifecycle), on its connection.
    core.storage.add_credential_revoker(ConnectionTokenRevoker)
    # ... and end the device's (or user's) SSO sessions in that same transaction.
    core.storage.add_credential_revoker(ConnectionSessionRevoker, kind=SESSIONS)
    sso = settings.sessions
    return OIDCProvider(
        issuer=TokenIssuer(
            keys,
            issuer=issuer,
            id_token_ttl=oidc.id_token_ttl,
            access_token_ttl=oidc.access_token_ttl,
        ),
        keys=keys,
        clients=clients,
        codes=SqlCodeStore(database),
        tokens=SqlTokenStore(database),
        nonces=nonces,
        gate=gate,
        binding=binding,
        local_users=local_users,
        authenticators=dict(authenticators),
        code_ttl=oidc.code_ttl,
        refresh_token_ttl=oidc.refresh_token_ttl,
        login_ttl=oidc.login_ttl,
        device_nonce_ttl=oidc.device_nonce_ttl,
        agent_port=oidc.agent_port,
        secure_cookies=issuer.startswith("https://"),
        device_cert_proxies=oidc.device_cert_proxies,
        device_cert_header=oidc.device_cert_header,
        groups_of=directory_groups_reader(core.storage),
        sessions=(
            SqlSessionStore(database, idle_ttl=sso.idle_ttl, absolute_ttl=sso.absolute_ttl)
            if sso.enabled
            else None
        ),
        session_cookie=sso.cookie_name,
        session_lifetime=sso.absolute_ttl,
        on_block=StaleAccessEnder(core.storage),
    )


def register(app: Flask, provider: OIDCProvider) -> None:
    """Install ``provider`` on ``app``: authlib's server, the session cookie flags, the
    protocol (``/oauth/*``, discovery, JWKS) and login blueprints."""
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=provider.secure_cookies,
    )
    app.extensions[EXTENSION_KEY] = provider
    provider.init_app(app)
    init_front_ends(app)  # the login pages answer other protocols too (SAML installs its own)
    app.register_blueprint(provider_bp)
    app.register_blueprint(login_bp)
    app.register_blueprint(recheck_bp)  # "Check again": a fresh check-in, then the device step
    init_basic_auth_guard(app)  # non-UTF-8 Basic credentials: 401, not authlib's 500
