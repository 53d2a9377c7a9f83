"""The read model warmed at worker start, in a daemon thread (issue 9 item 5, the cold path).

:func:`init_read_model_warm` starts, in a served worker (``posture serve`` marks its workers
with ``POSTURE_SERVE_WORKER=1``; CLI commands and tests, which also build the app, never warm
unless ``force``), one daemon thread that reads the decision state of the
``read_model.warm_devices`` most recently checked-in devices and their owners into the
process's read model (:meth:`~mdm_core.read_model.decision_reads.CachedDecisionReads.warm`).
Decisions served meanwhile take the normal miss path. A failure is logged and nothing else:
every entry is version-checked by the decision that reads it, so a warm-up can make a
decision faster, never different.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from flask import Flask

from mdm_core.read_model.wiring import read_model_of
from posture_gateway.directory.ldap_schedule import SERVE_WORKER_ENV
from posture_gateway.state import state

__all__ = ["init_read_model_warm", "WARM_LOG"]

log = logging.getLogger(__name__)

#: The first words of the line a worker logs when its read model is warm (the bench waits
#: for it).
WARM_LOG = "read model warm"


def init_read_model_warm(app: Flask, *, force: bool = False) -> threading.Thread | None:
    """Start the warm-up thread when this process is a served worker (or ``force``) and
    ``read_model.warm_devices`` > 0; returns it (tests join it)."""
    with app.app_context():
        st = state()
    limit = st.settings.read_model.warm_devices
    if limit <= 0 or (not force and os.environ.get(SERVE_WORKER_ENV) != "1"):
        return None
    reads = read_model_of(st.core).reads

    def run() -> None:
        started = time.monotonic()
        try:
            report = reads.warm(limit)
        except Exception:  # never fatal: decisions read through the cache as before
            log.exception("read model warm-up failed; decisions take the miss path")
            return
        log.info(
            "%s: %d devices (%d with state), %d users in %.1f s",
            WARM_LOG,
            report.devices,
            report.device_states,
            report.users,
            time.monotonic() - started,
        )

    thread = threading.Thread(target=run, name="read-model-warm", daemon=True)
    thread.start()
    return thread
