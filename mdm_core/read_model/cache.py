"""A bounded, thread-safe cache of values tagged with the entity versions they were read at.

``get(name, versions)`` answers the cached value only when every version it was stored with
equals the one given (read this decision); otherwise it is a miss and the caller refetches.
Entries may also carry an expiry (verified tokens). The cache holds at most ``max_entries``;
beyond that the oldest entries go first. ``clear()`` drops everything (resync).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["VersionedCache", "MISS"]

V = TypeVar("V")


class _Miss:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


#: What :meth:`VersionedCache.get` answers when there is no usable entry.
MISS = _Miss()


class VersionedCache(Generic[V]):
    def __init__(
        self, *, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[tuple[int, ...], V, float | None]] = (
            OrderedDict()
        )
        self.hits = 0
        self.misses = 0

    def get(self, name: Hashable, versions: tuple[int, ...]) -> V | _Miss:
        """The value stored for ``name`` at exactly ``versions`` and not expired, else MISS."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry[0] != versions:
                self.misses += 1
                return MISS
            if entry[2] is not None and self._clock() >= entry[2]:
                del self._entries[name]
                self.misses += 1
                return MISS
            self.hits += 1
            return entry[1]

    def put(
        self, name: Hashable, versions: tuple[int, ...], value: V, *, ttl_s: float | None = None
    ) -> None:
        """Store ``value`` for ``name`` as read at ``versions`` (until ``ttl_s`` if given)."""
        expires = self._clock() + ttl_s if ttl_s is not None else None
        with self._lock:
            self._entries[name] = (versions, value, expires)
            self._entries.move_to_end(name)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def drop(self, name: Hashable) -> None:
        """Forget ``name`` (unknown names are ignored)."""
        with self._lock:
            self._entries.pop(name, None)

    def drop_matching(self, predicate: Callable[[Hashable], bool]) -> int:
        """Forget every entry whose name satisfies ``predicate``; returns how many."""
        with self._lock:
            names = [n for n in self._entries if predicate(n)]
            for n in names:
                del self._entries[n]
        return len(names)

    def clear(self) -> None:
        """Forget everything (after a lost bus connection, or on demand)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
