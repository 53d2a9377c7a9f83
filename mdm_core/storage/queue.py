"""The command queue: per-device commands, their status and every transition they went through.

The status machine itself is :mod:`mdm_core.device.command_model`; stores enforce it under a
row lock and write one ``command_transitions`` row per change. Domain events for those
transitions are the service's job (it writes them to the outbox in the same unit of work).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from mdm_core.device.command_model import (
    Command,
    CommandStatus,
    CommandType,
    NewCommand,
    Transition,
)

__all__ = ["CommandQueueStore", "CommandReadStore", "CommandStore"]


class CommandQueueStore(Protocol):
    def enqueue(self, commands: Sequence[NewCommand]) -> list[tuple[Command, bool]]:
        """Insert ``commands`` as ``queued`` (recording the ``None -> queued`` transition);
        returns ``(command, created)`` in input order.

        A command whose ``(device_id, idempotency_key)`` already exists is not inserted: the
        existing command is returned with ``created=False`` if it has the same type and payload,
        else `mdm_core.device.command_model.IdempotencyConflict` is raised. An unknown device
        raises
        `mdm_core.device.command_model.NoSuchDevice`, a retired or wiped one
        `mdm_core.device.command_model.InactiveDevice`, and nothing is inserted. Empty input:
        ``[]``.
        """
        ...

    def next_commands(self, device_id: str, limit: int) -> list[Command]:
        """Up to ``limit`` deliverable commands of the device (``queued``, ``delivered`` but
        unanswered, ``not_now``): highest priority first, then oldest. ``[]`` when none."""
        ...

    def mark_delivered(self, commands: Sequence[Command], at: datetime) -> list[Transition]:
        """Mark ``commands`` delivered at ``at`` (attempts + 1), one transition each; returns the
        transitions (with the new attempt count). Empty input: ``[]``."""
        ...

    def record_result(
        self,
        device_id: str,
        command_id: str,
        status: CommandStatus,
        detail: str | None,
        at: datetime,
    ) -> tuple[Command, Transition | None]:
        """Apply the device's answer. Unknown id or another device's command:
        `mdm_core.device.command_model.UnknownCommand`. The same answer repeated is a no-op
        (``transition`` is ``None``); a transition the status machine forbids:
        `mdm_core.device.command_model.IllegalTransition`."""
        ...

    def cancel(self, command_id: str, detail: str, at: datetime) -> tuple[Command, Transition]:
        """Cancel a non-final command.

        Unknown id: ``UnknownCommand``; a final command: ``IllegalTransition``.
        """
        ...


class CommandReadStore(Protocol):
    def get(self, command_id: str) -> Command | None:
        """The command, or ``None`` for an unknown id."""
        ...

    def transitions(self, command_id: str) -> list[Transition]:
        """Every transition of the command, oldest first; ``[]`` for an unknown id."""
        ...

    def for_device(self, device_id: str, *, limit: int = 100) -> list[Command]:
        """The device's commands, newest first; ``[]`` when none."""
        ...

    def of_types(
        self, device_id: str, command_types: Collection[CommandType], *, limit: int
    ) -> list[Command]:
        """The device's commands of any of ``command_types``, newest first, at most
        ``limit`` (one statement for several types)."""
        ...


class CommandStore(CommandQueueStore, CommandReadStore, Protocol):
    """Both halves, as ``uow.commands``."""
