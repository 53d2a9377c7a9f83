"""The shared posture cache on Redis: one string key per device, expiring on its own.

Owns :class:`RedisPostureCache`, the production :class:`mdm_core.posture.cache.PostureCache`
that every gateway process reads. A value is ``CachedPosture.to_json()`` stored with
``SET key value PX ttl`` under ``posture:cache:v1:<device id>``, so Redis enforces the TTL and
an ``invalidate`` (``DEL``) is seen by every process at once. Every Redis failure raises
:class:`mdm_core.domain.infra_errors.InfraUnavailable` / ``InfraError``, an undecodable value
``InfraCorrupt``: the caller treats all of them as a miss and reads the store (fail closed,
see :mod:`mdm_core.posture.cache`).
"""

from __future__ import annotations

from datetime import timedelta

import redis

from mdm_core.domain.infra_errors import redis_errors
from mdm_core.posture.cache import CachedPosture, require_device_id, ttl_milliseconds
from mdm_core.redis_backends.client import require_timeouts

__all__ = ["RedisPostureCache"]


class RedisPostureCache:
    """``PostureCache`` on a shared ``redis.Redis`` client (built once, with timeouts)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "posture:cache:v1:") -> None:
        require_timeouts(client)
        if not prefix:
            raise ValueError("prefix must not be empty")
        self._client = client
        self._prefix = prefix.encode()

    def _key(self, device_id: str) -> bytes:
        require_device_id(device_id)
        return self._prefix + device_id.encode("utf-8")

    def get(self, device_id: str) -> CachedPosture | None:
        key = self._key(device_id)
        with redis_errors("GET"):
            raw = self._client.get(key)
        if raw is None:
            return None
        assert isinstance(raw, bytes)
        return CachedPosture.from_json(raw)

    def put(self, device_id: str, value: CachedPosture, ttl: timedelta) -> None:
        key = self._key(device_id)
        if not isinstance(value, CachedPosture):
            raise ValueError("value must be a CachedPosture")
        ms = ttl_milliseconds(ttl)
        with redis_errors("SET"):
            self._client.set(key, value.to_json(), px=ms)

    def invalidate(self, device_id: str) -> None:
        key = self._key(device_id)
        with redis_errors("DEL"):
            self._client.delete(key)
