"""Rate limiting: the :class:`RateLimiter` protocol and its sliding-window rule.

Owns one rule, shared by every backend so that they agree to the hit: the *sliding window
counter*. Time is cut into windows of ``window``; a hit at ``elapsed`` into the current window
is allowed when ``previous * (window - elapsed) / window + current + 1 <= limit`` (the previous
window's count weighted by how much of it still overlaps the sliding window). It needs two
counters per key, yet unlike a fixed window it does not allow a burst of ``2 * limit`` across a
window boundary. Refused hits are not counted, so a client that backs off gets through again.

The two implementations are the ones the core wires (``mdm_core.runtime``): the Redis one,
:class:`mdm_core.redis_backends.rate_limiter.RedisRateLimiter`, applies the rule atomically in
a Lua script when ``redis_url`` is set; the SQL one, :class:`mdm_core.ratelimit.sql.SqlRateLimiter`,
in one conditional upsert (the embedded default, shared by every process on the database).
Both pass ``tests/contracts/test_rate_limiter.py``. There is no in-process limiter: a count
kept in one worker would multiply a limit by the number of workers.

:meth:`RateLimiter.allows` asks the same question without counting, for limits that count
only failures (check before the attempt, :meth:`RateLimiter.hit` after a failure). That pair
is not atomic: concurrent attempts that all checked before any failed are all let through, so
such a limit may be overshot by the number of requests in flight at once.

Errors: bad arguments raise ``ValueError``; a failing backend raises
:class:`mdm_core.domain.infra_errors.InfraError`, which the caller must turn into a refusal (fail
closed) on anything security-relevant (logins, token and proof endpoints).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

__all__ = [
    "RateLimiter",
    "sliding_window_allows",
    "validate_hit",
]


class RateLimiter(Protocol):
    """Counts hits per key and says whether one more is allowed."""

    def hit(self, key: str, limit: int, window: timedelta) -> bool:
        """Record one hit on ``key``; ``True`` if it is within ``limit`` hits per sliding
        ``window``, ``False`` (and not counted) if it is over.

        A key should always be used with the same ``limit``; different ``window`` values keep
        separate counts. Raises ``ValueError`` for an empty key, ``limit < 1`` or a window
        under one millisecond (nothing is counted), ``InfraError`` when the backend fails.
        """
        ...

    def allows(self, key: str, limit: int, window: timedelta) -> bool:
        """Whether :meth:`hit` would allow one more hit on ``key`` now, counting nothing.

        An unknown key is allowed. Same arguments and errors as :meth:`hit`.
        """
        ...


def validate_hit(key: str, limit: int, window: timedelta) -> int:
    """Check the arguments of :meth:`RateLimiter.hit`; return the window in milliseconds."""
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("limit must be a positive integer")
    window_ms = int(window / timedelta(milliseconds=1))
    if window_ms < 1:
        raise ValueError("window must be at least one millisecond")
    return window_ms


def sliding_window_allows(
    previous: int, current: int, elapsed_ms: int, window_ms: int, limit: int
) -> bool:
    """The rule, in integers: ``previous*(window-elapsed)/window + current + 1 <= limit``."""
    return previous * (window_ms - elapsed_ms) + (current + 1) * window_ms <= limit * window_ms
