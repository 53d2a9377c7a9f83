"""Single-use, expiring nonces the gateway hands out, each bound to ONE purpose.

A nonce is issued for a purpose — the browser login's device check, its warn ticket, the
Entra EAM device check, a posture-API device proof for one caller — and can only be consumed
for that same purpose. The purpose string carries the audience the device proof is bound to
(and, for the API, the caller), built by :func:`nonce_purpose`: a login nonce presented to the
posture API, or an API nonce presented to the login, is unknown there and is NOT spent.

:class:`NonceStore` is the protocol; :class:`InProcessNonceStore` is the embedded
implementation (one process); :class:`posture_gateway.oidc.sql_nonces.SqlNonceStore` is the
default shared one. A Redis implementation would key ``SET H(purpose, nonce) "" NX EXAT`` and
consume with ``DEL`` returning 1, satisfying the same contract
(``tests/contracts/test_nonce_store.py``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

__all__ = ["BoundNonce", "NonceStore", "InProcessNonceStore", "NonceKind", "nonce_purpose"]


class NonceKind(StrEnum):
    """What a nonce is for (the first part of its purpose)."""

    LOGIN_DEVICE = "login.device"  # the OIDC browser login's device check
    LOGIN_WARN = "login.warn"  # the "continue anyway" ticket after a warn verdict
    ENTRA_DEVICE = "entra.device"  # the device check of an Entra EAM sign-in
    API_DECISION = "api.decision"  # a device proof presented to POST /api/v1/decision


def nonce_purpose(kind: NonceKind, *, audience: str, caller: str = "") -> str:
    """The purpose a nonce is issued and consumed for: kind, audience, and the caller (API).

    Parts are joined with a character that cannot occur in a URL or a client id, so two
    different triples never give the same purpose.
    """
    for part in (audience, caller):
        if "\n" in part:
            raise ValueError("a nonce purpose part must not contain a newline")
    if not audience:
        raise ValueError("a nonce is bound to an audience")
    return "\n".join((kind.value, audience, caller))


class NonceStore(Protocol):
    """Issues random nonces bound to a purpose and consumes each at most once, atomically."""

    def issue(self, ttl: timedelta, *, purpose: str) -> str:
        """Return a new unguessable nonce (>= 128 bits, URL-safe) valid for ``ttl``, usable
        only for ``purpose`` (see :func:`nonce_purpose`).

        Never returns a nonce that is already live. Raises ValueError for a non-positive
        ``ttl`` or an empty ``purpose``; raises on a storage failure (callers fail closed: no
        nonce, no login).
        """
        ...

    def consume(self, nonce: str, *, purpose: str) -> bool:
        """Spend ``nonce`` for ``purpose``: True exactly once for a live nonce this store
        issued for that same purpose.

        False for an unknown, expired or already consumed nonce, for the empty string, and for
        a nonce issued for ANOTHER purpose — which stays live for its own purpose (nothing is
        spent). Atomic: of two concurrent calls with the same nonce at most one gets True.
        Raises ValueError for an empty ``purpose``; raises on a storage failure (callers treat
        that as False).
        """
        ...


class BoundNonce:
    """The spend a login proof's verifier calls once its signature holds: ``store.consume``
    for one ``purpose``. Over a store that names its Redis key (``redis_key``), it is a
    :class:`mdm_core.device.proof.RedisSpendable`: the verifier deletes the key in the round
    trip of the proof's replay record instead of calling."""

    __slots__ = ("_store", "_purpose")

    def __init__(self, store: NonceStore, purpose: str) -> None:
        if not purpose:
            raise ValueError("a nonce is consumed for a purpose")
        self._store = store
        self._purpose = purpose

    def __call__(self, nonce: str) -> bool:
        return self._store.consume(nonce, purpose=self._purpose)

    def redis_key(self, nonce: str) -> str | None:
        key_of = getattr(self._store, "redis_key", None)
        return key_of(nonce, purpose=self._purpose) if callable(key_of) else None


class InProcessNonceStore:
    """Nonces in a dict guarded by a lock; expired entries are swept as new ones are issued."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._live: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def issue(self, ttl: timedelta, *, purpose: str) -> str:
        if ttl <= timedelta(0):
            raise ValueError("a nonce needs a positive time to live")
        if not purpose:
            raise ValueError("a nonce needs a purpose")
        nonce = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._sweep(now)
            self._live[(purpose, nonce)] = now + ttl.total_seconds()
        return nonce

    def consume(self, nonce: str, *, purpose: str) -> bool:
        if not purpose:
            raise ValueError("a nonce is consumed for a purpose")
        if not nonce:
            return False
        now = self._clock()
        with self._lock:
            expires = self._live.pop((purpose, nonce), None)
        return expires is not None and now < expires

    def _sweep(self, now: float) -> None:
        if len(self._live) < 1024:
            return
        for key in [k for k, exp in self._live.items() if exp <= now]:
            del self._live[key]
