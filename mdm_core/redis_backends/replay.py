"""Redis implementation of :class:`mdm_core.storage.replay.ReplayStore` (shared, self-expiring).

``remember`` is one ``SET <prefix><jti> "" NX EXAT <expires_at + margin>``: ``NX`` makes the
first writer win atomically across every gateway/MDM process, and ``EXAT`` lets Redis forget
the entry by itself, so ``purge_expired`` has nothing to do. ``remember_spending`` sends a
``DEL`` of a single-use key (a login proof's nonce, on the same server) and that ``SET`` in one
pipeline: one round trip, each command atomic on its own, both replies read.

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

    def remember_spending(
        self, jti: str, expires_at: datetime, single_use_key: str
    ) -> tuple[bool, bool]:
        """``DEL single_use_key`` and :meth:`remember` ``jti`` in one round trip: (whether the
        key existed and is now gone, whether the jti is new). The key must live on this
        client's server; one that does not is simply not found (refused, never accepted)."""
        exat = math.ceil((expires_at + self._margin).timestamp())
        with redis_errors("DEL + SET NX EXAT"):
            pipe = self._redis.pipeline(transaction=False)
            pipe.delete(single_use_key)
            pipe.set(self._prefix + jti, b"", nx=True, exat=exat)
            deleted, fresh = pipe.execute()
        return int(deleted) == 1, bool(fresh)

    def purge_expired(self, now: datetime) -> int:
        return 0  # Redis expires the keys itself (EXAT)
