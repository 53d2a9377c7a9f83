"""Redis implementation of :class:`mdm_core.storage.replay.ReplayStore` (shared, self-expiring).

``remember`` is one ``SET <prefix><jti> "" NX EXAT <expires_at + margin>``: ``NX`` makes the
first writer win atomically across every gateway/MDM process, and ``EXAT`` lets Redis forget
the entry by itself, so ``purge_expired`` has nothing to do.

Fails closed: a Redis failure raises :class:`mdm_core.domain.infra_errors.InfraError` (never "not a
replay"), so the proof is not accepted. The client must be built with timeouts
(:func:`mdm_core.redis_backends.client.connect_redis`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from redis import Redis

from mdm_core.domain.infra_errors import redis_errors
from mdm_core.redis_backends.client import require_timeouts

__all__ = ["RedisReplayStore"]


class RedisReplayStore:
    """Replay store on a Redis client (any ``redis.Redis``, incl. Sentinel/Cluster clients)."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "posture:jti:",
        # EXAT is judged by the Redis server's clock, while expires_at was computed from this
        # process's clock. The margin keeps an entry a little longer than the proof can live,
        # so clock skew between app hosts and Redis can never re-open a replay window.
        margin: timedelta = timedelta(seconds=30),
    ) -> None:
        require_timeouts(client)  # raises ValueError for None or a client without timeouts
        self._redis = client
        self._prefix = prefix
        self._margin = margin

    def remember(self, jti: str, expires_at: datetime) -> bool:
        exat = math.ceil((expires_at + self._margin).timestamp())
        with redis_errors("SET NX EXAT"):
            return bool(self._redis.set(self._prefix + jti, b"", nx=True, exat=exat))

    def purge_expired(self, now: datetime) -> int:
        return 0  # Redis expires the keys itself (EXAT)
