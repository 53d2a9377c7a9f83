"""The stale-posture sweep inside the server (see :mod:`mdm_core.policy.staleness`).

:func:`init_stale_sweep` starts a :class:`~mdm_core.policy.staleness.StaleSweep` in every
served worker (``posture serve`` marks its workers with ``POSTURE_SERVE_WORKER=1``) unless
``stale_sweep.enabled`` is false; the lease row lets one of them sweep at a time. CLI commands
and in-process test apps, which also build the app, start it only with ``force``. It is
stopped (and its lease released) at interpreter exit.
"""

from __future__ import annotations

import atexit
import os

from flask import Flask

from mdm_core.policy.staleness import StaleSweep
from posture_gateway.directory.ldap_schedule import SERVE_WORKER_ENV
from posture_gateway.state import state

__all__ = ["init_stale_sweep", "EXTENSION"]

#: Where the running sweep is kept on the Flask app.
EXTENSION = "posture_stale_sweep"


def init_stale_sweep(app: Flask, *, force: bool = False) -> StaleSweep | None:
    """Start the sweep in a served worker (or with ``force``) when enabled."""
    with app.app_context():
        st = state()
    config = st.settings.stale_sweep
    if not config.enabled:
        return None
    if not force and os.environ.get(SERVE_WORKER_ENV) != "1":
        return None
    sweep = StaleSweep(
        st.core.storage,
        st.core.policies.current,
        interval=config.interval,
        batch=config.batch,
    )
    app.extensions[EXTENSION] = sweep
    sweep.start()
    atexit.register(sweep.stop)
    return sweep
