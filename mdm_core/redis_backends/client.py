"""Building the one ``redis.Redis`` client a process shares, with timeouts that fail fast.

Every Redis-backed implementation (:mod:`mdm_core.redis_backends.bus`,
:mod:`mdm_core.redis_backends.rate_limiter`, :mod:`mdm_core.redis_backends.replay`) takes a
client built
once by the composition root, never a URL. :func:`connect_redis` builds it with bounded
socket timeouts and at most one quick retry (so a pooled connection that went stale across a
Redis restart is replaced transparently, while an outage surfaces within about two timeouts
as :class:`mdm_core.domain.infra_errors.InfraUnavailable`). :func:`require_timeouts` is the check
each implementation runs on the client it is given.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

__all__ = ["connect_redis", "require_timeouts"]


def connect_redis(url: str, *, timeout: float = 1.0, retries: int = 1) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://`` or ``unix://``) that fails fast.

    ``timeout`` (seconds) bounds connecting and every socket read/write; ``retries`` is how
    many times a command is re-sent on a fresh connection after a connection error or timeout.
    Raises ``ValueError`` for a non-positive timeout or a negative retry count.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if retries < 0:
        raise ValueError("retries must not be negative")
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries),
        health_check_interval=30,
        decode_responses=False,
    )


def require_timeouts(client: redis.Redis) -> float:
    """Return the client's socket timeout in seconds; raise ``ValueError`` if it has none.

    A client without a socket timeout can hang a request thread forever on a half-open
    connection, which is neither failing open nor closed: it is not accepted. Clients that
    decode responses are refused too (these implementations handle bytes).
    """
    if client is None:
        raise ValueError("a redis client is required")
    kwargs = client.connection_pool.connection_kwargs
    timeout = kwargs.get("socket_timeout")
    if timeout is None or float(timeout) <= 0:
        raise ValueError("the redis client must be built with a positive socket_timeout")
    if kwargs.get("decode_responses"):
        raise ValueError("the redis client must be built with decode_responses=False")
    return float(timeout)
