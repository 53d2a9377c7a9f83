"""The Flask app factory: builds the whole server from validated ``Settings``.

``create_app(settings)`` opens the MDM core (database, bus, services), registers every
feature blueprint, and keeps per-app state in ``app.extensions["posture"]``
(:class:`GatewayState`), never in module globals.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from flask import Flask, current_app

from mdm_core.api.checkin_views import bp as checkin_bp
from mdm_core.api.enrollment_views import bp as enrollment_bp
from mdm_core.events import EventBus
from mdm_core.runtime import CoreConfig, MdmCore, build_core
from posture_gateway.integrations import register as integrations_register
from posture_gateway.settings import Settings, load_settings

__all__ = ["create_app", "GatewayState", "state"]


@dataclass
class GatewayState:
    settings: Settings
    core: MdmCore


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
    )


def _event_bus(settings: Settings) -> EventBus | None:
    """The Redis Streams bus when ``redis_url`` is set (every process sees every event);
    ``None`` lets the core use its in-process bus (the embedded default)."""
    if not settings.redis_url:
        return None
    from mdm_core.bus_redis import RedisEventBus
    from mdm_core.redis_client import connect_redis

    return RedisEventBus(connect_redis(settings.redis_url))


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    if settings.log_format is not None:
        from posture_gateway.observability.logs import configure_logging

        configure_logging(settings.log_format)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["SECRET_KEY"] = (
        settings.secret_key.get_secret_value() if settings.secret_key else secrets.token_hex(32)
    )
    core = build_core(core_config(settings), bus=_event_bus(settings))
    app.extensions["posture"] = GatewayState(settings=settings, core=core)

    from posture_gateway.health import bp as health_bp

    app.register_blueprint(health_bp)
    from posture_gateway.observability.requests import init_app as init_request_log

    init_request_log(app)  # X-Request-ID and the access log (first, so it sees every request)
    # Feature blueprints register below (one line each).
    app.register_blueprint(checkin_bp)  # device check-ins, command results, long-poll
    app.register_blueprint(enrollment_bp)  # device enrollment, renewal, CA certificate
    from posture_gateway.admin_api import bp as admin_api_bp

    app.register_blueprint(admin_api_bp)  # /admin/api: what-if, policy status (bearer token)
    from posture_gateway.oidc.setup import init_app as init_oidc

    init_oidc(app)  # the OpenID provider: key ring, tokens, /oauth/*, login pages
    integrations_register(app, settings.integrations, public_url=settings.public_url)
    from posture_gateway.device_gate import init_app as init_device_gate

    init_device_gate(app)  # the real device gate + decision service (replace fail-closed seams)
    from posture_gateway.observability.metrics import bp as metrics_bp
    from posture_gateway.pages.landing import bp as landing_bp

    app.register_blueprint(metrics_bp)  # GET /metrics (bearer token) unless metrics.listen
    app.register_blueprint(landing_bp)  # /, /privacy, /help/sign-in, /enroll (HTML pages)
    return app


def state() -> GatewayState:
    """The gateway state of the current app (inside an app or request context)."""
    st = current_app.extensions["posture"]
    assert isinstance(st, GatewayState)
    return st
