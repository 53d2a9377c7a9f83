"""The reads of one decision behind one small protocol: store-backed and cached.

:class:`DecisionReads` answers, for a user and (optionally) a device, what the engine needs:
the user as the directory mirror knows them (effective groups, active), the device's latest
stored posture and its rules' first-failure times. :class:`StoreDecisionReads` reads them from
the stores (today's reads, one unit of work); :class:`CachedDecisionReads` decorates the same
store reads with the process's :class:`~mdm_core.read_model.cache.VersionedCache`: ONE
statement reads the versions of ``device:<id>`` and ``directory`` (once per request inside a
:func:`~mdm_core.read_model.scope.version_scope`) and only what changed since it was cached is
refetched, after the versions were read.

:meth:`CachedDecisionReads.identity` serves the login-proof verifier the device's identity
(status, public key, current certificate's validity and revocation) under the same
``device:<id>`` version (the ``certificates`` table bumps it too, migration
``0007_perf_decision_certs``), and :meth:`CachedDecisionReads.device` the lookups that need
the record without a proof (token refresh binding).

:meth:`CachedDecisionReads.warm` fills the cache in bulk (worker start): every version first,
then the state of the most recently checked-in devices and their owners
(:mod:`mdm_core.read_model.warm`), each put under the version read first.
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
from mdm_core.read_model.scope import VersionReader
from mdm_core.read_model.versions import DIRECTORY, device_key
from mdm_core.read_model.warm import read_all_versions, read_fleet
from mdm_core.storage.identity import DeviceIdentity
from mdm_core.storage.posture import StoredPosture
from mdm_core.storage.sql.uow import SqlStorage, SqlUnitOfWork

__all__ = [
    "WarmReport",
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


@dataclass(frozen=True, slots=True)
class WarmReport:
    """What :meth:`CachedDecisionReads.warm` cached."""

    devices: int  # identities (and records) cached
    device_states: int  # postures + rule failures cached
    users: int  # owners' user contexts cached


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
        self._versions = VersionReader(storage)

    @contextmanager
    def _reading(self) -> Iterator[SqlUnitOfWork]:
        """The stores for a miss (reads only): on PostgreSQL on an autocommit connection (no
        BEGIN/COMMIT round trips; READ COMMITTED gives each statement a fresh snapshot in a
        transaction too), on SQLite a unit of work."""
        database = self._storage.database
        if not database.is_postgres:
            with self._storage.unit_of_work() as uow:
                yield uow
            return
        with database.autocommit_connection() as conn:
            yield SqlUnitOfWork(conn, database.dialect)

    def decision_state(self, user_id: str, device_id: str | None) -> DecisionState:
        keys = (DIRECTORY, device_key(device_id)) if device_id else (DIRECTORY,)
        seen = self._versions.versions(keys)
        directory_v = (seen[DIRECTORY],)
        user = self.cache.get(("user", user_id), directory_v)
        state: object = MISS
        device_v: tuple[int, ...] = ()
        if device_id is not None:
            device_v = (seen[device_key(device_id)],)
            state = self.cache.get(("device_state", device_id), device_v)
        if user is MISS or (device_id is not None and state is MISS):
            with self._reading() as uow:  # read after the versions
                if user is MISS:
                    user = user_context(uow, user_id)
                    self.cache.put(("user", user_id), directory_v, user)
                if device_id is not None and state is MISS:
                    state = _DeviceState(
                        posture=uow.posture.latest(device_id),
                        failures=MappingProxyType(dict(uow.compliance.rule_failures(device_id))),
                    )
                    self.cache.put(("device_state", device_id), device_v, state)
        if device_id is None:
            return DecisionState(user=user)  # type: ignore[arg-type]
        assert isinstance(state, _DeviceState)
        return DecisionState(
            user=user,  # type: ignore[arg-type]
            posture=state.posture,
            rule_failures=state.failures,
        )

    def device(self, device_id: str) -> DeviceRecord | None:
        key = device_key(device_id)
        version = (self._versions.versions((key,))[key],)
        record = self.cache.get(("device", device_id), version)
        if record is MISS:
            with self._reading() as uow:
                record = uow.devices.get(device_id)
            self.cache.put(("device", device_id), version, record)
        return record  # type: ignore[return-value]

    def identity(self, device_id: str) -> DeviceIdentity | None:
        """The device and its current certificate as the proof verifier checks them (``None``
        for an unknown id, which is not cached: random ids cannot fill the cache).

        A miss reads ahead, on the same connection, what the decision reads next when it is
        not cached either: the device's state and its owner's user context (a device seen
        for the first time by this process costs one connection, not two)."""
        key = device_key(device_id)
        version = (self._versions.versions((key,))[key],)
        found = self.cache.get(("identity", device_id), version)
        if isinstance(found, DeviceIdentity):
            return found
        directory_v = (self._versions.versions((DIRECTORY,))[DIRECTORY],)  # before the data
        with self._reading() as uow:
            identity = uow.identities.lookup(device_id)
            if identity is not None:
                self._read_ahead(uow, identity.device, version, directory_v)
        if identity is not None:
            self.cache.put(("identity", device_id), version, identity)
        return identity

    def _read_ahead(
        self,
        uow: SqlUnitOfWork,
        device: DeviceRecord,
        version: tuple[int],
        directory_v: tuple[int],
    ) -> None:
        if self.cache.get(("device_state", device.id), version) is MISS:
            state = _DeviceState(
                posture=uow.posture.latest(device.id),
                failures=MappingProxyType(dict(uow.compliance.rule_failures(device.id))),
            )
            self.cache.put(("device_state", device.id), version, state)
        if device.user_id:
            if self.cache.get(("user", device.user_id), directory_v) is MISS:
                self.cache.put(
                    ("user", device.user_id), directory_v, user_context(uow, device.user_id)
                )

    def warm(self, limit: int) -> WarmReport:
        """Cache the decision state of the ``limit`` most recently checked-in devices and of
        their owners, in a few statements (not one per device). Raises when the store cannot
        be read; what was not cached is read on the normal miss path.

        ORDER MATTERS: every version is read BEFORE the data it guards, and each entry is put
        under the version read first. A write committed between the two (a check-in, a
        revocation) makes the entry look older than its data: the next decision reads the new
        version, misses and refetches. Never the other way round (an entry newer-looking than
        its data would serve stale state)."""
        with self._reading() as uow:
            versions = read_all_versions(uow.conn)  # FIRST: the versions
            fleet = read_fleet(uow.conn, limit)  # THEN: the data they guard
        directory_v = (versions.get(DIRECTORY, 0),)
        for user in fleet.users.values():
            self.cache.put(("user", user.id), directory_v, user)
        states = 0
        # Oldest first: the cache evicts the oldest insertions, so the most recently
        # checked-in devices stay when the cache is too small for the limit.
        for identity in reversed(fleet.identities):
            device_id = identity.device.id
            version = (versions.get(device_key(device_id), 0),)
            self.cache.put(("identity", device_id), version, identity)
            self.cache.put(("device", device_id), version, identity.device)
            failures = fleet.failures.get(device_id)
            if device_id in fleet.postures and failures is not None:
                state = _DeviceState(
                    posture=fleet.postures[device_id], failures=MappingProxyType(failures)
                )
                self.cache.put(("device_state", device_id), version, state)
                states += 1
        return WarmReport(
            devices=len(fleet.identities), device_states=states, users=len(fleet.users)
        )
