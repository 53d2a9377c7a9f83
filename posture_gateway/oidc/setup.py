"""Wiring of the OpenID provider into the app: ``init_app(app)``.

Builds everything once at start from the validated settings: the key ring (loaded or
generated, see :mod:`posture_gateway.signing.key_ring`), the token issuer, the relying parties and
local
users (their files validated in full: an invalid file stops start-up with ``file:line``), the
gateway's OIDC tables (``create_all``), the grant stores, the nonce store and the device gate;
registers the protocol and login blueprints and sets the session cookie flags.

Nonces default to :class:`~posture_gateway.oidc.sql_nonces.SqlNonceStore` (shared by every
process on the database); pass a Redis store as ``nonces=`` when there is one. The device gate
defaults to :class:`~posture_gateway.login.device_check.UnconfiguredDeviceGate`
(every login blocked) until the composition root passes the real one.
"""

from __future__ import annotations

from flask import Flask

from mdm_core.ratelimit.guard import RateGuard
from mdm_core.redis_backends.client import connect_redis
from posture_gateway.access.nonces import NonceStore
from posture_gateway.login.device_check import DeviceGate, UnconfiguredDeviceGate
from posture_gateway.login.transactions import init_app as init_login_transactions
from posture_gateway.oidc.basic_auth_guard import init_app as init_basic_auth_guard
from posture_gateway.oidc.claims import directory_groups_reader
from posture_gateway.oidc.clients import load_clients
from posture_gateway.oidc.local_users import FailureLimiter, LoginLimits, load_local_users
from posture_gateway.oidc.login import bp as login_bp
from posture_gateway.oidc.provider import bp as provider_bp
from posture_gateway.oidc.redis_nonces import RedisNonceStore
from posture_gateway.oidc.server import EXTENSION_KEY, OIDCProvider
from posture_gateway.oidc.sql_grants import (
    ConnectionTokenRevoker,
    SqlCodeStore,
    SqlTokenStore,
    create_tables,
)
from posture_gateway.oidc.sql_nonces import SqlNonceStore
from posture_gateway.oidc.tokens import TokenIssuer
from posture_gateway.oidc.yamlconf import ConfigFileError
from posture_gateway.settings import ConfigError, Settings
from posture_gateway.signing.key_ring import KeyRing, KeyRingError
from posture_gateway.state import GatewayState

__all__ = ["init_app", "build_key_ring", "issuer_of"]


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


def init_app(
    app: Flask,
    *,
    gate: DeviceGate | None = None,
    nonces: NonceStore | None = None,
) -> OIDCProvider:
    """Build the provider from ``app.extensions["posture"]`` and register its blueprints."""
    state = app.extensions["posture"]
    assert isinstance(state, GatewayState)
    settings = state.settings
    oidc = settings.oidc
    try:
        clients = load_clients(oidc.clients_file)
        # One count for every process: the core's shared limiter (Redis, else the database).
        limiter = FailureLimiter(
            RateGuard(state.core.rate_limiter, state.core.storage),
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
    database = state.core.database
    create_tables(database)
    # Quarantine, revocation, retirement, wipe and account disable revoke tokens in their own
    # unit of work (mdm_core.domain.device_lifecycle), on its connection.
    state.core.storage.add_credential_revoker(ConnectionTokenRevoker)
    provider = OIDCProvider(
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
        # Redis when configured (no database write per nonce), else the shared table.
        nonces=nonces
        or (
            RedisNonceStore(connect_redis(settings.redis_url))
            if settings.redis_url
            else SqlNonceStore(database)
        ),
        gate=gate or UnconfiguredDeviceGate(),
        local_users=local_users,
        code_ttl=oidc.code_ttl,
        refresh_token_ttl=oidc.refresh_token_ttl,
        login_ttl=oidc.login_ttl,
        device_nonce_ttl=oidc.device_nonce_ttl,
        agent_port=oidc.agent_port,
        secure_cookies=issuer.startswith("https://"),
        device_cert_proxies=oidc.device_cert_proxies,
        device_cert_header=oidc.device_cert_header,
        groups_of=directory_groups_reader(state.core.storage),
    )
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=provider.secure_cookies,
    )
    app.extensions[EXTENSION_KEY] = provider
    provider.init_app(app)
    # Login transactions server side (the cookie holds only their id), shared by every process.
    init_login_transactions(app, database, settings.redis_url)

    app.register_blueprint(provider_bp)
    app.register_blueprint(login_bp)

    init_basic_auth_guard(app)  # non-UTF-8 Basic credentials: 401, not authlib's 500
    return provider
