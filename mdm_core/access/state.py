"""What an access decision reads, and the narrow protocol it reads it through.

:class:`AccessStateReader` is all the evaluator needs from storage (two methods). The SQL
implementation, :class:`SqlAccessState`, reads the existing stores in one read-only unit of
work per call; a cached read model (invalidated by domain events) can implement the same
protocol and be injected instead — the evaluator never sees a unit of work.

:class:`AccessState` is the snapshot of that state one decision is made on: the user as the
engine sees them (effective group names, active), the device record, its latest stored posture
(with the time it was received, which gives the posture's age by the server's clock) and the
first-failure time of each (policy, rule) on the device (grace timelines count from it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from mdm_core.directory.mirror import user_context
from mdm_core.domain.model import DeviceRecord
from mdm_core.policy.model import UserContext
from mdm_core.storage.posture import StoredPosture
from mdm_core.storage.uow import Storage

__all__ = ["AccessState", "AccessStateReader", "SqlAccessState"]


@dataclass(frozen=True, slots=True)
class AccessState:
    """The state one decision is made on (see the module docstring)."""

    user: UserContext | None
    device: DeviceRecord | None
    stored: StoredPosture | None = None
    rule_failures: Mapping[tuple[str, str], datetime] = field(default_factory=dict)


class AccessStateReader(Protocol):
    """The read side of an access decision. Both methods are read-only and raise only when
    the state cannot be read at all (the evaluator then blocks, ``unavailable``)."""

    def device(self, device_id: str) -> DeviceRecord | None:
        """The device record with this id, whatever its status; ``None`` for an unknown id."""
        ...

    def access_state(self, user_id: str, device: DeviceRecord | None) -> AccessState:
        """The state a decision for ``user_id`` on ``device`` reads: ``user`` is ``None`` when
        the user is not in the directory mirror (an inactive user is returned, with
        ``active=False``); ``device`` is returned as given; ``stored`` is the device's latest
        posture, ``None`` when it never reported or there is no device; ``rule_failures`` is
        ``{}`` when no rule is failing or there is no device."""
        ...


class SqlAccessState:
    """:class:`AccessStateReader` on the SQL stores (one read-only unit of work per call)."""

    def __init__(self, storage: Storage) -> None:
        if storage is None:
            raise ValueError("SqlAccessState needs a storage")
        self._storage = storage

    def device(self, device_id: str) -> DeviceRecord | None:
        with self._storage.unit_of_work() as uow:
            return uow.devices.get(device_id)

    def access_state(self, user_id: str, device: DeviceRecord | None) -> AccessState:
        with self._storage.unit_of_work() as uow:
            user = user_context(uow, user_id)
            if device is None:
                return AccessState(user=user, device=None)
            stored = uow.posture.latest(device.id)
            failures = uow.compliance.rule_failures(device.id)
        return AccessState(user=user, device=device, stored=stored, rule_failures=failures)
