"""The scheduled LDAP sync inside the server (see :mod:`idp_connectors.ldap.scheduler`).

:func:`init_ldap_schedule` starts an :class:`~idp_connectors.ldap.scheduler.LdapScheduler`
in a served worker (``posture serve`` marks its workers with ``POSTURE_SERVE_WORKER=1``)
when ``ldap.schedule.enabled``; CLI commands and tests, which also build the app, never start
it. Every worker starts one; the lease row lets exactly one of them sync at a time. It is
stopped (and the lease released) at interpreter exit.
"""

from __future__ import annotations

import atexit
import os

from flask import Flask

from idp_connectors.ldap.scheduler import LdapScheduler
from posture_gateway.state import state

__all__ = ["init_ldap_schedule", "SERVE_WORKER_ENV"]

#: Set by ``posture serve`` in its workers' environment.
SERVE_WORKER_ENV = "POSTURE_SERVE_WORKER"


def init_ldap_schedule(app: Flask, *, force: bool = False) -> LdapScheduler | None:
    """Start the schedule when configured and this process is a served worker (or ``force``)."""
    with app.app_context():
        st = state()
    ldap = st.settings.ldap
    if ldap is None or not ldap.schedule.enabled:
        return None
    if not force and os.environ.get(SERVE_WORKER_ENV) != "1":
        return None
    scheduler = LdapScheduler(
        ldap, st.core.storage, source_of_truth=st.core.directory.source_of_truth
    )
    app.extensions["posture_ldap_schedule"] = scheduler
    scheduler.start()
    atexit.register(scheduler.stop)
    return scheduler
