"""The store contract of the stale-posture sweep: which devices went silent.

:meth:`StalePostureStore.candidates` lists, oldest report first, the devices whose latest
posture was received before a cutoff, whose status still lets them in (``active`` or
``pending_verification``) and whose recorded verdict is not already ``block``: the only
devices the sweep (:mod:`mdm_core.policy.staleness`) may have to block. It is one
index-backed range query (``ix_posture_latest_received_at``), paged by ``(received_at,
device_id)``, never a scan per device. :meth:`StalePostureStore.lock` re-reads one device's
latest receive time inside the sweep's unit of work and holds the row against a concurrent
check-in until the unit of work ends (``FOR UPDATE`` on PostgreSQL, the database write lock
on SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["StaleCandidate", "StalePostureStore"]


@dataclass(frozen=True, slots=True)
class StaleCandidate:
    device_id: str
    received_at: datetime


class StalePostureStore(Protocol):
    def candidates(
        self, cutoff: datetime, *, after: StaleCandidate | None, limit: int
    ) -> list[StaleCandidate]:
        """At most ``limit`` devices (see the module docstring) received before ``cutoff``,
        ordered by ``(received_at, device_id)`` and strictly after ``after`` when given."""
        ...

    def lock(self, device_id: str) -> datetime | None:
        """The device's latest posture receive time, row held until the unit of work ends;
        ``None`` when it has no stored posture."""
        ...
