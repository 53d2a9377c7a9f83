"""One version read per request: every key a request needs, read in one statement, once.

A request opens :func:`version_scope` naming the keys it already knows it will need (the
posture API: ``tokens``, ``directory`` and ``device:<kid>`` of the proof, whose ``kid`` is in
the unverified header: reading the version of an unverified id is harmless). Every
:meth:`VersionReader.versions` call inside the scope answers from what the scope has read and
reads only the keys it has not, together with every wanted key still missing, in one
statement. Outside a scope each call reads.

Reusing one read for the whole request is safe: the versions are read before any data they
guard, so a write landing later makes a copy cached during the request look older than it is
(refetched by the next request), never newer; and a write committed before the request began
(a check-in that degraded the device) is in the read.

On PostgreSQL the read is one autocommit ``SELECT`` (one round trip: no BEGIN, no COMMIT) on
a connection of the database's autocommit pool
(:meth:`~mdm_core.storage.sql.database.Database.autocommit_cursor`), also inside a request's
shared transaction: a pure read needs no transaction, and the shared one (READ COMMITTED)
would see exactly the same committed rows. On SQLite it is a unit of work as before
(in-process, no round trip).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from mdm_core.read_model.versions import SqlVersionStore, read_versions_autocommit
from mdm_core.storage.sql.uow import SqlStorage

__all__ = ["VersionReader", "scope_statements", "version_scope", "want_versions"]


@dataclass(slots=True)
class _Scope:
    read: dict[str, int] = field(default_factory=dict)
    wanted: dict[str, None] = field(default_factory=dict)
    statements: int = 0  # version reads made in this scope (tests, observability)


_SCOPE: ContextVar[_Scope | None] = ContextVar("posture_version_scope", default=None)


@contextmanager
def version_scope(*wanted: str) -> Iterator[None]:
    """Read each key's version at most once inside the block (``wanted`` with the first read).
    A nested scope joins the outer one."""
    outer = _SCOPE.get()
    if outer is not None:
        want_versions(*wanted)
        yield
        return
    token = _SCOPE.set(_Scope(wanted=dict.fromkeys(wanted)))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def want_versions(*keys: str) -> None:
    """Add ``keys`` to what the current scope's next read fetches (no scope: nothing)."""
    scope = _SCOPE.get()
    if scope is not None:
        for key in keys:
            scope.wanted.setdefault(key, None)


class VersionReader:
    """Versions of read-model keys on ``storage``, through the current :func:`version_scope`."""

    def __init__(self, storage: SqlStorage) -> None:
        if storage is None:
            raise ValueError("VersionReader needs the storage")
        self._storage = storage
        self._database = storage.database

    def versions(self, keys: Iterable[str]) -> Mapping[str, int]:
        """The current version of each of ``keys`` (read once per scope)."""
        wanted = list(dict.fromkeys(keys))
        scope = _SCOPE.get()
        if scope is None:
            return self._read(wanted)
        missing = [k for k in wanted if k not in scope.read]
        if missing:
            extra = [k for k in scope.wanted if k not in scope.read]
            scope.read.update(self._read(list(dict.fromkeys(missing + extra))))
            scope.statements += 1
        return {k: scope.read[k] for k in wanted}

    def _read(self, keys: list[str]) -> Mapping[str, int]:
        if not keys:
            return {}
        if self._database.is_postgres:
            return read_versions_autocommit(self._database, keys)
        with self._storage.unit_of_work() as uow:
            return SqlVersionStore(uow.conn).versions(keys)


def scope_statements() -> int:
    """Version reads made so far in the current scope (0 without one)."""
    scope = _SCOPE.get()
    return scope.statements if scope is not None else 0
