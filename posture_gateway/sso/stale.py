"""Stale posture ends the device's access: the revocation a check-in cannot trigger.

A device that stopped checking in never sends the check-in that would revoke its sessions
and tokens. Its staleness is seen when the evaluator decides for it again: the next login
(inside a session or not) and the next token refresh block it with reason ``posture_stale``.
:class:`StaleAccessEnder` then ends every session and token of that device in one unit of
work (:func:`mdm_core.domain.device_lifecycle.end_device_access`, reason ``posture_stale``:
audited, with the ``access.revoked`` outbox event), so the other applications' tokens die at
once instead of at their own next refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from mdm_core.access.decision import Decision
from mdm_core.domain.device_lifecycle import end_device_access
from mdm_core.storage.uow import Storage

__all__ = ["StaleAccessEnder", "STALE_CODE"]

log = logging.getLogger(__name__)

STALE_CODE = "posture_stale"


class StaleAccessEnder:
    """Called with every blocking decision of a login or refresh."""

    def __init__(self, storage: Storage, clock: Callable[[], datetime] | None = None) -> None:
        if storage is None:
            raise ValueError("StaleAccessEnder needs a storage")
        self._storage = storage
        self._clock = clock or (lambda: datetime.now(UTC))

    def __call__(self, decision: Decision) -> int:
        """End the device's access if ``decision`` blocks it for stale posture; returns how
        many live credentials ended (0 otherwise). Raises on a storage error."""
        if decision.outcome != "block" or decision.device_id is None:
            return 0
        if not any(r.code == STALE_CODE for r in decision.reasons):
            return 0
        with self._storage.unit_of_work() as uow:
            count = end_device_access(uow, decision.device_id, reason=STALE_CODE, at=self._clock())
        if count:
            log.warning(
                "stale posture: ended %d credentials of device %s", count, decision.device_id
            )
        return count
