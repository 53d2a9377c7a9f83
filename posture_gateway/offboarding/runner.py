"""The offboarding job inside the server (see :mod:`mdm_core.offboarding.service`).

:func:`init_offboarding_runner` starts ``core.offboarding``'s loop (``run_due`` every
``offboarding.interval``, default 5 s) in every served worker (``posture serve`` marks its
workers with ``POSTURE_SERVE_WORKER=1``); the lease row lets one of them work at a time. CLI
commands and in-process test apps, which also build the app, start it only with ``force``.
It is stopped (and its lease released) at interpreter exit and by ``core.close()``.
"""

from __future__ import annotations

import atexit
import os

from flask import Flask

from mdm_core.offboarding.service import OffboardingService
from posture_gateway.directory.ldap_schedule import SERVE_WORKER_ENV
from posture_gateway.state import state

__all__ = ["init_offboarding_runner"]


def init_offboarding_runner(app: Flask, *, force: bool = False) -> OffboardingService | None:
    """Start the offboarding loop in a served worker (or with ``force``)."""
    with app.app_context():
        st = state()
    if not force and os.environ.get(SERVE_WORKER_ENV) != "1":
        return None
    service = st.core.offboarding
    service.start(interval=st.settings.offboarding.interval)
    atexit.register(service.stop)
    return service
