"""The Flask app factory: builds the whole server from validated ``Settings``.

``create_app(settings)`` opens the MDM core (database, bus, services), builds every gateway
service over it (:func:`posture_gateway.wiring.build_services`: stores, device gate and
decision pipeline, OpenID provider, integrations state), and only then registers the
blueprints. Per-app state lives in ``app.extensions`` (``"posture"``: :class:`GatewayState`),
never in module globals; nothing installed there is replaced later.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from idp_connectors.scim import init_app as init_scim
from mdm_core.api.checkin_views import bp as checkin_bp
from mdm_core.api.enrollment_views import bp as enrollment_bp
from mdm_core.bus.events import EventBus
from mdm_core.redis_backends.bus import RedisEventBus
from mdm_core.redis_backends.client import connect_redis
from mdm_core.runtime import CoreConfig, build_core
from mdm_core.support.secret_file import SecretFileError, load_or_create_secret
from posture_gateway.access.device_gate import install as install_evaluator
from posture_gateway.access.warm_start import init_read_model_warm
from posture_gateway.admin.devices_api import bp as admin_devices_bp
from posture_gateway.api.admin import bp as admin_api_bp
from posture_gateway.api.health import bp as health_bp
from posture_gateway.cookie_session import install as install_cookie_session
from posture_gateway.directory.ldap_schedule import init_ldap_schedule
from posture_gateway.directory.local_users import sync_users_file
from posture_gateway.hr.setup import register as register_hr
from posture_gateway.integrations.setup import register as register_integrations
from posture_gateway.login.transactions import install as install_login_transactions
from posture_gateway.observability.logs import configure_logging
from posture_gateway.observability.metrics import bp as metrics_bp
from posture_gateway.observability.requests import init_app as init_request_log
from posture_gateway.offboarding.api import bp as offboarding_bp
from posture_gateway.offboarding.runner import init_offboarding_runner
from posture_gateway.oidc.setup import register as register_oidc
from posture_gateway.oidc.web import baseline_headers
from posture_gateway.pages.landing import bp as landing_bp
from posture_gateway.saml.setup import register as register_saml
from posture_gateway.settings import ConfigError, Settings, load_settings
from posture_gateway.signals.setup import machine_scopes
from posture_gateway.signals.setup import register as register_signals
from posture_gateway.sso.stale_sweep import init_stale_sweep
from posture_gateway.state import GatewayState, state
from posture_gateway.wiring import build_services

__all__ = ["create_app", "GatewayState", "state", "SECRET_KEY_FILE"]

#: The generated session-signing key, in the data directory (when ``secret_key`` is unset).
SECRET_KEY_FILE = "secret-key"  # noqa: S105 - a file name, not a secret


def core_config(settings: Settings) -> CoreConfig:
    ca = settings.ca
    return CoreConfig(
        database_url=settings.effective_database_url,
        data_dir=settings.data_dir,
        public_url=settings.public_url,
        policy_dir=settings.policy_dir,
        dev_mode=settings.dev_mode,
        ca_passphrase=ca.passphrase.get_secret_value() if ca.passphrase else None,
        ca_key_path=ca.key_path,
        ca_cert_path=ca.cert_path,
        device_cert_lifetime=ca.device_cert_lifetime,
        renew_before=ca.renew_before,
        proof_max_age=settings.proof.max_age,
        proof_leeway=settings.proof.leeway,
        posture_history_length=settings.posture_history_length,
        redis_url=settings.redis_url,
        enroll_limit_per_source=settings.enroll.limit_per_source,
        enroll_source_window=settings.enroll.source_window,
        enroll_limit_per_target=settings.enroll.limit_per_target,
        enroll_target_window=settings.enroll.target_window,
        max_waits=settings.long_poll.max_waits,
        max_wait_s=settings.long_poll.max_wait_s,
        directory_source_of_truth={
            k: tuple(v) for k, v in settings.directory.source_of_truth.items()
        },
    )


def _event_bus(settings: Settings) -> EventBus | None:
    """The Redis Streams bus when ``redis_url`` is set (every process sees every event);
    ``None`` lets the core use its in-process bus (the embedded default)."""
    if not settings.redis_url:
        return None

    return RedisEventBus(connect_redis(settings.redis_url))


def _secret_key(settings: Settings) -> str:
    """The session-signing key: configured, else generated once in ``<data_dir>/secret-key``
    (0600) and shared by every process (workers) using that data directory."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    try:
        return load_or_create_secret(settings.data_dir / SECRET_KEY_FILE)
    except SecretFileError as exc:
        raise ConfigError(f"secret_key: {exc}") from exc


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    if settings.log_format is not None:
        configure_logging(settings.log_format)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    if settings.trusted_proxy_hops:  # client address from X-Forwarded-For (rate limits)
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxy_hops, x_proto=0, x_host=0
        )
    # The core first: it checks the CA configuration before it creates anything (data_dir
    # included), so a configuration mistake leaves nothing behind.
    core = build_core(core_config(settings), bus=_event_bus(settings))
    app.config["SECRET_KEY"] = _secret_key(settings)
    install_cookie_session(app)  # the signed cookie session, without its per-request cost
    # Every gateway service next, each with its real collaborators (no placeholder swapped
    # later); then the app state, then the blueprints.
    services = build_services(settings, core)
    app.extensions["posture"] = GatewayState(settings=settings, core=core)
    install_evaluator(app, services.access)  # what-if asks the evaluator every login asks
    install_login_transactions(app, services.login_transactions)

    app.register_blueprint(health_bp)
    init_request_log(app)  # X-Request-ID and the access log (first, so it sees every request)
    # Feature blueprints register below (one line each).
    app.register_blueprint(checkin_bp)  # device check-ins, command results, long-poll
    app.register_blueprint(enrollment_bp)  # device enrollment, renewal, CA certificate
    app.register_blueprint(admin_api_bp)  # /admin/api: what-if, policy status (bearer token)
    app.register_blueprint(admin_devices_bp)  # /admin/api: devices, commands, wipe requests
    register_oidc(app, services.provider)  # the OpenID provider: /oauth/*, login pages
    sync_users_file(  # its users into the mirror
        core.storage, settings.oidc.users_file, source_of_truth=core.directory.source_of_truth
    )
    register_integrations(  # APIs, Okta, Entra; the one client-credentials grant
        app,
        services.integrations,
        services.provider,
        machine_scopes=machine_scopes(settings.signals),
    )
    register_signals(app, services.signals)  # Shared Signals transmitter (SSF, CAEP, RISC)
    register_saml(app, services.saml)  # the SAML IdP: /saml/metadata, /saml/sso
    register_hr(app, services.hr)  # HR webhooks /hr/v1/webhooks/*, /admin/api/hr/deliveries
    init_scim(
        app,
        settings.scim,
        storage=core.storage,
        limiter=core.rate_limiter,
        public_url=settings.public_url,
        source_of_truth=core.directory.source_of_truth,
    )  # /scim/v2
    app.after_request(baseline_headers)  # one set of security headers for every response

    app.register_blueprint(metrics_bp)  # GET /metrics (bearer token) unless metrics.listen
    app.register_blueprint(landing_bp)  # /, /privacy, /help/sign-in, /enroll (HTML pages)
    app.register_blueprint(offboarding_bp)  # /admin/api/offboarding (named admins)
    init_ldap_schedule(app)  # the scheduled LDAP sync, in served workers, one at a time by lease
    init_stale_sweep(app)  # silent devices blocked + revoked, in served workers, one by lease
    init_offboarding_runner(app)  # offboarding jobs fire and advance, served workers, by lease
    init_read_model_warm(app)  # served workers read their read model in (daemon thread)
    return app
