"""The transactional outbox: domain events written with the state change that caused them.

A service adds its events through ``uow.outbox`` inside the unit of work that changes the
state, so both commit or neither does. :class:`mdm_core.bus.outbox_relay.OutboxRelay` later reads
the unpublished rows in id order, hands them to the event bus and marks them published.

An :class:`OutboxListener` (registered on the storage by a plane that must react durably,
e.g. the signals transmitter) is called by the SQL outbox with the events it adds, on the
unit of work's own connection: what it writes commits or rolls back with the state change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mdm_core.bus.events import DomainEvent

__all__ = ["OutboxEntry", "OutboxListener", "OutboxStore"]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An outbox row: its position (``id``, increasing in commit order per writer) and event."""

    id: int
    event: DomainEvent


class OutboxStore(Protocol):
    def add(self, events: Sequence[DomainEvent]) -> None:
        """Append ``events`` (in order) as unpublished rows of this unit of work.

        An empty sequence does nothing. An event id that is already in the outbox raises
        (the database's unique constraint): events are facts, written once.
        """
        ...

    def fetch_unpublished(self, limit: int) -> list[OutboxEntry]:
        """Up to ``limit`` unpublished rows, lowest id first; ``[]`` when none.

        On PostgreSQL the rows are locked (``FOR UPDATE SKIP LOCKED``) until the unit of work
        ends, so concurrent relays in other processes take disjoint batches.
        """
        ...

    def mark_published(self, ids: Sequence[int], at: datetime) -> None:
        """Set ``published_at`` on the rows ``ids``. Unknown ids are ignored; empty is a no-op."""
        ...

    def purge_published(self, before: datetime) -> int:
        """Delete rows published before ``before``; returns how many. Unpublished rows stay."""
        ...


class OutboxListener(Protocol):
    """Told of every batch of events a unit of work adds to the outbox, before commit.

    Runs inside the unit of work (same connection, same transaction): whatever it writes
    commits with the events, and an exception it raises rolls the whole unit of work back.
    It must be cheap for the events it does not care about (check-ins add events).
    """

    def events_added(self, events: Sequence[DomainEvent]) -> None: ...
