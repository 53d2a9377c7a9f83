"""Builds the HR webhooks' state and registers their blueprint.

:func:`build` (called by :func:`posture_gateway.wiring.build_services`) reads each configured
source's secret once (a ``secret_file`` that cannot be read, or a short secret, raises
``ConfigError`` naming ``hr.<source>``) and builds the service over ``core.offboarding``;
:func:`register` installs the state and the webhook and admin blueprints.
"""

from __future__ import annotations

from flask import Flask

from mdm_core.runtime import MdmCore
from posture_gateway.hr.admin import bp as admin_bp
from posture_gateway.hr.service import HrTriggerService
from posture_gateway.hr.settings import HrSettings
from posture_gateway.hr.state import EXTENSION, HrState
from posture_gateway.hr.views import bp as webhooks_bp
from posture_gateway.settings import ConfigError

__all__ = ["build", "register"]


def build(settings: HrSettings, core: MdmCore) -> HrState:
    keys: dict[str, bytes | None] = {}
    for name, source in (("bamboohr", settings.bamboohr), ("generic", settings.generic)):
        try:
            keys[name] = source.secret_bytes() if source is not None else None
        except ValueError as exc:
            raise ConfigError(f"hr.{name}: {exc}") from exc
    return HrState(
        settings=settings,
        service=HrTriggerService(
            core.storage, core.offboarding, retention=settings.delivery_retention
        ),
        bamboohr_key=keys["bamboohr"],
        generic_key=keys["generic"],
    )


def register(app: Flask, state: HrState | None) -> None:
    if state is None:  # a hand-built GatewayServices (tests) without the HR webhooks
        return
    app.extensions[EXTENSION] = state
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(admin_bp)
