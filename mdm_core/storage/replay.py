"""Replay protection: remember each proof's ``jti`` until the proof could no longer verify.

Implementations: :class:`mdm_core.storage.sql.replay.SqlReplayStore` (in the caller's
transaction) and :class:`mdm_core.redis_backends.replay.RedisReplayStore` (shared, self-expiring).
Both pass ``tests/contracts/test_replay_store.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

__all__ = ["ReplayStore"]


class ReplayStore(Protocol):
    def remember(self, jti: str, expires_at: datetime) -> bool:
        """Record ``jti`` until ``expires_at``. ``True`` the first time, ``False`` if it was
        already remembered (a replay). Atomic: of concurrent calls with one ``jti`` exactly
        one gets ``True``. Callers pass an ``expires_at`` in the future."""
        ...

    def purge_expired(self, now: datetime) -> int:
        """Forget entries whose ``expires_at`` is before ``now``; returns how many (an
        implementation whose entries expire by themselves returns 0)."""
        ...
