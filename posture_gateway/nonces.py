"""Single-use, expiring nonces the gateway hands out (device-check challenges, login steps).

:class:`NonceStore` is the protocol; :class:`InProcessNonceStore` is the embedded
implementation (one process). A Redis implementation (``SET nonce "" NX EXAT``; consume with
``GETDEL``/``DEL`` returning 1) satisfies the same contract for several processes.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

__all__ = ["NonceStore", "InProcessNonceStore"]


class NonceStore(Protocol):
    """Issues random nonces and consumes each at most once, atomically."""

    def issue(self, ttl: timedelta) -> str:
        """Return a new unguessable nonce (>= 128 bits, URL-safe) valid for ``ttl``.

        Never returns a nonce that is already live. Raises on a storage failure (callers fail
        closed: no nonce, no login).
        """
        ...

    def consume(self, nonce: str) -> bool:
        """Spend ``nonce``: True exactly once for a live nonce this store issued.

        False for an unknown, expired or already consumed nonce (and for the empty string).
        Atomic: of two concurrent calls with the same nonce at most one gets True. Raises on a
        storage failure (callers treat that as False).
        """
        ...


class InProcessNonceStore:
    """Nonces in a dict guarded by a lock; expired entries are swept as new ones are issued."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._live: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, ttl: timedelta) -> str:
        if ttl <= timedelta(0):
            raise ValueError("a nonce needs a positive time to live")
        nonce = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._sweep(now)
            self._live[nonce] = now + ttl.total_seconds()
        return nonce

    def consume(self, nonce: str) -> bool:
        if not nonce:
            return False
        now = self._clock()
        with self._lock:
            expires = self._live.pop(nonce, None)
        return expires is not None and now < expires

    def _sweep(self, now: float) -> None:
        if len(self._live) < 1024:
            return
        for key in [k for k, exp in self._live.items() if exp <= now]:
            del self._live[key]
