"""Posture storage: each device's latest normalised posture and a bounded history of reports.

The history is a ring of ``history_length`` slots per device (slot = seq % length): recording
a check-in is an upsert, never a trim, so it stays bounded by construction. Only postures that
already went through the device's privacy profile are ever given to this store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mdm_core.posture.merge import PostureSources
from mdm_core.posture.model import Posture

__all__ = ["StoredPosture", "RecordedPosture", "PostureStore"]


@dataclass(frozen=True, slots=True)
class StoredPosture:
    device_id: str
    seq: int  # 1 for a device's first report, +1 per report
    received_at: datetime
    posture: Posture


@dataclass(frozen=True, slots=True)
class RecordedPosture:
    seq: int
    previous: Posture | None  # the latest posture before this report; None for the first
    #: A hint read in the same round trip: whether the device has deliverable commands
    #: (``None``: not known, ask the command store). Lets the check-in skip a query.
    commands_waiting: bool | None = None
    previous_sources: PostureSources | None = None  # which format set each previous field


class PostureStore(Protocol):
    def record(
        self,
        device_id: str,
        posture: Posture,
        *,
        received_at: datetime,
        history_length: int,
        sources: PostureSources | None = None,
    ) -> RecordedPosture:
        """Make ``posture`` the device's latest, write it to history slot ``seq % history_length``
        and set ``devices.last_checkin_at = received_at``, in one go (the posture is JSON-encoded
        once). Returns the new sequence number, the previous latest posture and, where the
        backend can tell in the same round trip, whether commands are waiting.

        Raises :class:`mdm_core.domain.errors.NotFound` for an unknown device (the unit of work must
        then be abandoned).
        """
        ...

    def replace_latest(
        self,
        device_id: str,
        seq: int,
        posture: Posture,
        sources: PostureSources,
        *,
        history_length: int,
    ) -> None:
        """Overwrite report ``seq`` (latest and its history slot) with ``posture`` (a merge of
        several sources), if ``seq`` is still the latest; otherwise do nothing."""
        ...

    def latest(self, device_id: str) -> StoredPosture | None:
        """The device's latest posture, or ``None`` if it never reported (or is unknown)."""
        ...

    def history(self, device_id: str, limit: int | None = None) -> list[StoredPosture]:
        """Stored reports, newest first (at most the ring length); ``[]`` if none."""
        ...
