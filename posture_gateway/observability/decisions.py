"""One structured log line per access decision, on the ``posture.decision`` logger.

Fields: ``outcome``, ``channel``, ``app`` (the client id or SAML entity asking), ``device``
(the device id, or null when none was proven), ``reasons`` (codes), ``rules``
(``policy/rule`` ids that fired), ``policy_ids``, ``posture_age_s`` and ``latency_ms``. Never
the user's secrets, tokens or posture values: the audit trail holds the full record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

__all__ = ["decision_log", "log_decision"]

decision_log = logging.getLogger("posture.decision")


def log_decision(
    outcome: str,
    *,
    channel: str,
    app: str | None,
    device_id: str | None,
    reasons: Sequence[str],
    rules: Sequence[str],
    policy_ids: Sequence[str],
    posture_age_s: float | None,
    started: float | None,
) -> None:
    latency_ms = round((time.perf_counter() - started) * 1e3, 2) if started is not None else None
    decision_log.info(
        "access decision %s",
        outcome,
        extra={
            "fields": {
                "event": "decision",
                "outcome": outcome,
                "channel": channel,
                "app": app,
                "device": device_id,
                "reasons": list(reasons),
                "rules": list(rules),
                "policy_ids": list(policy_ids),
                "posture_age_s": posture_age_s,
                "latency_ms": latency_ms,
            }
        },
    )
