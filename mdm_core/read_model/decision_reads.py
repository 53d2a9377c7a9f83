"""The reads of one decision behind one small protocol: store-backed and cached.

:class:`DecisionReads` answers, for a user and (optionally) a device, what the engine needs:
the user as the directory mirror knows them (effective groups, active), the device's latest
stored posture and its rules' first-failure times. :class:`StoreDecisionReads` reads them from
the stores (today's reads, one unit of work); :class:`CachedDecisionReads` decorates the same
store reads with the process's :class:`~mdm_core.read_model.cache.VersionedCache`: ONE
statement reads the versions of ``device:<id>`` and ``directory`` and only what changed since
it was cached is refetched, in the same transaction, after the versions were read.

The device record itself (status, keys) is read by the proof verifier in its own transaction
with the proof's replay record; :meth:`CachedDecisionReads.device` serves the lookups that do
not need it fresh from a proof (token refresh binding) the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from mdm_core.directory.mirror import user_context
from mdm_core.domain.model import DeviceRecord
from mdm_core.policy.model import UserContext
from mdm_core.read_model.cache import MISS, VersionedCache
from mdm_core.read_model.versions import DIRECTORY, SqlVersionStore, device_key
from mdm_core.storage.posture import StoredPosture
from mdm_core.storage.sql.uow import SqlStorage, SqlUnitOfWork

__all__ = [
    "DecisionState",
    "DecisionReads",
    "StoreDecisionReads",
    "CachedDecisionReads",
]


@dataclass(frozen=True, slots=True)
class DecisionState:
    """What the engine reads about a user and a device (``posture`` None: never reported)."""

    user: UserContext | None
    posture: StoredPosture | None = None
    rule_failures: Mapping[tuple[str, str], datetime] = field(default_factory=dict)


class DecisionReads(Protocol):
    def decision_state(self, user_id: str, device_id: str | None) -> DecisionState:
        """The state of ``user_id`` and ``device_id`` as committed when the call began (an
        unknown user gives ``user=None``; an unknown or absent device no posture, no
        failures). Raises when the store cannot be read (the caller blocks)."""
        ...

    def device(self, device_id: str) -> DeviceRecord | None:
        """The device record, or ``None`` for an unknown id."""
        ...


class StoreDecisionReads:
    """Today's reads straight from the stores, one unit of work per call."""

    def __init__(self, storage: SqlStorage) -> None:
        if storage is None:
            raise ValueError("StoreDecisionReads needs the storage")
        self._storage = storage

    def decision_state(self, user_id: str, device_id: str | None) -> DecisionState:
        with self._storage.unit_of_work() as uow:
            return DecisionState(
                user=user_context(uow, user_id),
                posture=uow.posture.latest(device_id) if device_id else None,
                rule_failures=uow.compliance.rule_failures(device_id) if device_id else {},
            )

    def device(self, device_id: str) -> DeviceRecord | None:
        with self._storage.unit_of_work() as uow:
            return uow.devices.get(device_id)


@dataclass(frozen=True, slots=True)
class _DeviceState:
    posture: StoredPosture | None
    failures: Mapping[tuple[str, str], datetime]


class CachedDecisionReads:
    """:class:`DecisionReads` through the versioned cache: a warm decision is one statement.

    ``cache`` may be shared with other readers of the same entities; its entry names are
    tuples starting with the kind (``("user", id)``, ``("device_state", id)``).
    """

    def __init__(self, storage: SqlStorage, cache: VersionedCache[object] | None = None) -> None:
        if storage is None:
            raise ValueError("CachedDecisionReads needs the storage")
        self._storage = storage
        self.cache: VersionedCache[object] = cache if cache is not None else VersionedCache()

    @contextmanager
    def _versions(self, *keys: str) -> Iterator[tuple[SqlUnitOfWork, Mapping[str, int]]]:
        with self._storage.unit_of_work() as uow:
            yield uow, SqlVersionStore(uow.conn).versions(keys)

    def decision_state(self, user_id: str, device_id: str | None) -> DecisionState:
        keys = (DIRECTORY, device_key(device_id)) if device_id else (DIRECTORY,)
        with self._versions(*keys) as (uow, seen):
            directory_v = (seen[DIRECTORY],)
            user = self.cache.get(("user", user_id), directory_v)
            if user is MISS:
                user = user_context(uow, user_id)
                self.cache.put(("user", user_id), directory_v, user)
            if device_id is None:
                return DecisionState(user=user)  # type: ignore[arg-type]
            device_v = (seen[device_key(device_id)],)
            state = self.cache.get(("device_state", device_id), device_v)
            if state is MISS:
                state = _DeviceState(
                    posture=uow.posture.latest(device_id),
                    failures=MappingProxyType(dict(uow.compliance.rule_failures(device_id))),
                )
                self.cache.put(("device_state", device_id), device_v, state)
        assert isinstance(state, _DeviceState)
        return DecisionState(
            user=user,  # type: ignore[arg-type]
            posture=state.posture,
            rule_failures=state.failures,
        )

    def device(self, device_id: str) -> DeviceRecord | None:
        key = device_key(device_id)
        with self._versions(key) as (uow, seen):
            version = (seen[key],)
            record = self.cache.get(("device", device_id), version)
            if record is MISS:
                record = uow.devices.get(device_id)
                self.cache.put(("device", device_id), version, record)
        return record  # type: ignore[return-value]
