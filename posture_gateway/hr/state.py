"""The HR webhooks' per-app state (``app.extensions["posture_hr"]``): the settings, the HMAC
keys read once at start, and the service. Views read it through :func:`hr_state`."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from posture_gateway.hr.service import HrTriggerService
from posture_gateway.hr.settings import HrSettings

__all__ = ["HrState", "hr_state", "EXTENSION"]

EXTENSION = "posture_hr"


@dataclass(frozen=True)
class HrState:
    settings: HrSettings
    service: HrTriggerService
    # None: that route is off. Never in a repr.
    bamboohr_key: bytes | None = field(repr=False)
    generic_key: bytes | None = field(repr=False)


def hr_state() -> HrState:
    st = current_app.extensions[EXTENSION]
    assert isinstance(st, HrState)
    return st
