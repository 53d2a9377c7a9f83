"""Failures of shared infrastructure backends (Redis today), as exceptions callers can map.

The exception tree::

    InfraError                  reason "infra_error": the backend answered with an error
    ├── InfraUnavailable        reason "infra_unavailable": unreachable, timed out, dropped
    └── InfraCorrupt            reason "infra_corrupt": reached, but the stored data is unreadable

Every Redis-backed implementation (event bus, nonces, replay records, rate limiter) raises only
these for backend trouble, never a bare ``redis`` exception, so a caller needs one ``except
InfraError`` to fail closed: a nonce or replay error refuses the proof, a
rate-limiter error is a refusal, and neither is ever read as "compliant" or "allowed".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions

__all__ = ["InfraCorrupt", "InfraError", "InfraUnavailable", "redis_errors"]


class InfraError(Exception):
    """A shared backend failed; the caller must fail closed."""

    reason = "infra_error"

    def __init__(self, backend: str, operation: str, detail: str) -> None:
        super().__init__(f"{backend} {operation} failed: {detail}")
        self.backend = backend
        self.operation = operation
        self.detail = detail


class InfraUnavailable(InfraError):
    """The backend could not be reached in time (refused, timed out, connection dropped)."""

    reason = "infra_unavailable"


class InfraCorrupt(InfraError):
    """The backend answered, but what it holds cannot be decoded."""

    reason = "infra_corrupt"


# Errors that mean "Redis is not usable right now" rather than "this command is wrong".
_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # includes AuthenticationError, BusyLoadingError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica promoted away from under us
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    OSError,
)


@contextmanager
def redis_errors(operation: str) -> Iterator[None]:
    """Translate any ``redis`` failure raised inside the block into an :class:`InfraError`."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise InfraUnavailable("redis", operation, type(exc).__name__) from exc
    except redis.exceptions.RedisError as exc:
        raise InfraError("redis", operation, type(exc).__name__) from exc
