"""Directory-source bookkeeping: entry keys, incremental cursors, and named leases.

- :class:`SourceEntryStore`: for each entry a source (LDAP) delivered, its stable mirror id and
  its current key in the source (a DN). Incremental syncs resolve member DNs through it; full
  syncs find deletions with it (an id it lists that the source no longer returns).
- :class:`SyncCursorStore`: per source, the incremental cursor (the highest change number or
  timestamp seen) and when the last full sync completed, stored durably so a restart resumes.
- :class:`LeaseStore`: a named lease row; the one holder of an unexpired lease runs the job, so
  a scheduled job runs in exactly one process however many workers the server has.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from mdm_core.storage.directory import MemberKind

__all__ = ["SourceEntry", "SyncCursor", "SourceEntryStore", "SyncCursorStore", "LeaseStore"]


@dataclass(frozen=True, slots=True)
class SourceEntry:
    entry_id: str  # the mirror id (the entry's stable id: objectGUID / entryUUID)
    kind: MemberKind
    key: str  # the entry's key in the source (a DN, lower case)


@dataclass(frozen=True, slots=True)
class SyncCursor:
    source: str
    cursor: str | None
    last_full_at: datetime | None
    updated_at: datetime


class SourceEntryStore(Protocol):
    def entries(self, source: str) -> dict[str, SourceEntry]:
        """Every entry of ``source`` by id; ``{}`` for an unknown source."""
        ...

    def put(self, source: str, entries: Collection[SourceEntry]) -> None:
        """Insert the entries, replacing the kind and key of those whose id already exists."""
        ...

    def remove(self, source: str, entry_ids: Collection[str]) -> int:
        """Remove those entries of ``source``; returns how many existed."""
        ...


class SyncCursorStore(Protocol):
    def get(self, source: str) -> SyncCursor | None:
        """The source's cursor row, or ``None`` when it never synced."""
        ...

    def put(
        self, source: str, cursor: str | None, *, at: datetime, full: bool = False
    ) -> SyncCursor:
        """Store the cursor (and, with ``full``, ``last_full_at = at``); creates the row."""
        ...


class LeaseStore(Protocol):
    def acquire(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
        """Take or renew the lease until ``now + ttl``: ``True`` when it was free, expired or
        already ``holder``'s; ``False`` (nothing changed) while another holder's is unexpired."""
        ...

    def release(self, name: str, holder: str) -> bool:
        """Give the lease up; ``False`` when ``holder`` did not hold it."""
        ...

    def holders(self) -> Mapping[str, tuple[str, datetime]]:
        """Every lease: name -> (holder, expires_at); ``{}`` when none."""
        ...
