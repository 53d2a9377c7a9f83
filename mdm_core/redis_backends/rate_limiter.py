"""The shared rate limiter on Redis: sliding-window counters applied atomically by a script.

Owns :class:`RedisRateLimiter`, the production :class:`mdm_core.ratelimit.limiter.RateLimiter`, so
that
a limit holds across every gateway process. One hash per (window, key) under
``posture:rl:<window ms>:<key>`` holds the counts of the current and previous windows (fields
are window indexes); a Lua script reads both, applies
:func:`mdm_core.ratelimit.limiter.sliding_window_allows`, increments on success, drops older fields
and sets the expiry, all atomically. One key per limit keeps it valid on Redis Cluster.

Time comes from the Redis server (``TIME``), so processes with skewed clocks still agree;
tests may inject a clock. Redis failures raise :class:`mdm_core.domain.infra_errors.InfraError`
(``InfraUnavailable`` when unreachable): the caller refuses the request (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import redis

from mdm_core.domain.infra_errors import redis_errors
from mdm_core.ratelimit.limiter import validate_hit
from mdm_core.redis_backends.client import require_timeouts

__all__ = ["RedisRateLimiter"]

# KEYS[1] the hash; ARGV: limit, window_ms, now_ms ('' = use the server clock), count ('1': hit,
# '0': only say whether a hit would be allowed, writing nothing).
# Integer arithmetic in doubles is exact here: counts <= limit, window_ms * limit < 2^53.
_HIT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[3])
end
local index = math.floor(now / window)
local elapsed = now - index * window
local cur_field = string.format('%d', index)
local prev_field = string.format('%d', index - 1)
local counts = redis.call('HMGET', KEYS[1], cur_field, prev_field)
local current = tonumber(counts[1]) or 0
local previous = tonumber(counts[2]) or 0
if previous * (window - elapsed) + (current + 1) * window > limit * window then
  return 0
end
if ARGV[4] == '0' then
  return 1
end
redis.call('HINCRBY', KEYS[1], cur_field, 1)
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if tonumber(field) < index - 1 then
    redis.call('HDEL', KEYS[1], field)
  end
end
redis.call('PEXPIRE', KEYS[1], 2 * window)
return 1
"""

_MAX_WINDOW_TIMES_LIMIT = 2**53


class RedisRateLimiter:
    """``RateLimiter`` on a shared ``redis.Redis`` client (built once, with timeouts).

    ``clock`` (seconds) replaces the Redis server clock; leave it ``None`` in production.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "posture:rl:",
        clock: Callable[[], float] | None = None,
    ) -> None:
        require_timeouts(client)
        if not prefix:
            raise ValueError("prefix must not be empty")
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._script = client.register_script(_HIT)

    def hit(self, key: str, limit: int, window: timedelta) -> bool:
        return self._run(key, limit, window, count=True)

    def allows(self, key: str, limit: int, window: timedelta) -> bool:
        return self._run(key, limit, window, count=False)

    def _run(self, key: str, limit: int, window: timedelta, *, count: bool) -> bool:
        window_ms = validate_hit(key, limit, window)
        if window_ms * limit >= _MAX_WINDOW_TIMES_LIMIT:
            raise ValueError("window * limit too large")
        now = "" if self._clock is None else str(int(self._clock() * 1000))
        redis_key = f"{self._prefix}{window_ms}:{key}".encode()
        with redis_errors("EVALSHA rate-limit"):
            result = self._script(
                keys=[redis_key], args=[limit, window_ms, now, "1" if count else "0"]
            )
        return bool(int(result))
