"""The per-app state of the gateway: its validated settings and the MDM core it built.

:class:`GatewayState` lives in ``app.extensions["posture"]`` (set by the app factory); views
and set-up hooks read it through :func:`state`. Kept apart from the factory so that the
modules the factory wires can import it without importing the factory.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from mdm_core.runtime import MdmCore
from posture_gateway.settings import Settings

__all__ = ["GatewayState", "state"]


@dataclass
class GatewayState:
    settings: Settings
    core: MdmCore


def state() -> GatewayState:
    """The gateway state of the current app (inside an app or request context)."""
    st = current_app.extensions["posture"]
    assert isinstance(st, GatewayState)
    return st
