"""The shared rate limiter on the SQL database: the embedded default for several processes.

Owns :class:`SqlRateLimiter`, a :class:`mdm_core.ratelimit.limiter.RateLimiter` on the
``rate_limits``
table, so that a limit holds across every gunicorn/granian worker sharing the SQLite file or
the PostgreSQL database when no Redis is configured. One row per (window, key) holds the
counts of the current and previous windows, exactly like the Redis hash.

A hit is ONE statement in its own transaction (never the caller's: a refused enrollment that
rolls back must still have been counted): an ``INSERT ... ON CONFLICT DO UPDATE ... WHERE
<the sliding-window rule> RETURNING``. The insert path (a new key) is always allowed; the
update path rolls the windows forward and counts the hit only when the rule allows it; no row
returned means refused (and nothing counted). PostgreSQL locks the conflicting row for the
upsert and SQLite holds its write lock for the statement, so concurrent hits never exceed the
limit on either.

Time is this process's clock (``time.time``): workers on one host share it, hosts agree to NTP
precision. A process whose clock is behind the stored window never resets the count (the
stored window and counts are kept), so skew can only make a limit stricter.

Rows of idle keys expire ``2 * window`` after their last hit and are purged by the limiter
every ``purge_every`` hits. Keys longer than 255 characters are stored as their SHA-256.
Database failures raise :class:`mdm_core.domain.infra_errors.InfraError` (``InfraUnavailable`` when
the database cannot be reached): the caller refuses the request (fail closed).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import BigInteger, ColumnElement, and_, bindparam, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from mdm_core.domain.infra_errors import InfraError, InfraUnavailable
from mdm_core.ratelimit.limiter import sliding_window_allows, validate_hit
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import rate_limits

__all__ = ["SqlRateLimiter"]

_MAX_KEY = 255
_MAX_WINDOW_TIMES_LIMIT = 2**62  # the rule's products stay within a signed 64-bit integer


def _stored_key(key: str) -> str:
    if len(key) <= _MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _param(name: str, value: int) -> ColumnElement[int]:
    return bindparam(name, value, type_=BigInteger)


class SqlRateLimiter:
    """``RateLimiter`` on a :class:`~mdm_core.storage.sql.database.Database` (SQLite/PostgreSQL).

    ``clock`` returns seconds since the epoch (``time.time`` by default; tests inject one).
    """

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], float] = time.time,
        purge_every: int = 1000,
    ) -> None:
        if database is None:
            raise ValueError("SqlRateLimiter needs a database")
        if purge_every < 1:
            raise ValueError("purge_every must be positive")
        self._db = database
        self._clock = clock
        self._purge_every = purge_every
        self._hits = 0
        self._lock = threading.Lock()
        self._insert = postgresql.insert if database.is_postgres else sqlite.insert

    def hit(self, key: str, limit: int, window: timedelta) -> bool:
        window_ms, now_ms = self._check(key, limit, window)
        index, elapsed = divmod(now_ms, window_ms)
        t = rate_limits
        stored = t.c.window_index
        idx = _param("idx", index)
        # Counts as of now: the stored window is this one (or later: a clock behind keeps it),
        # the one before (it becomes the previous), or older (nothing overlaps any more).
        previous = case(
            (stored >= idx, t.c.previous),
            (stored == idx - 1, t.c.current),
            else_=_param("zero_p", 0),
        )
        current = case((stored >= idx, t.c.current), else_=_param("zero_c", 0))
        w = _param("w", window_ms)
        rule = previous * (w - _param("elapsed", elapsed)) + (current + 1) * w <= _param(
            "limit_w", limit * window_ms
        )
        expires = now_ms + 2 * window_ms
        stmt = (
            self._insert(t)
            .values(
                window_ms=window_ms,
                key=_stored_key(key),
                window_index=index,
                current=1,
                previous=0,
                expires_ms=expires,
            )
            .on_conflict_do_update(
                index_elements=[t.c.window_ms, t.c.key],
                set_={
                    "previous": previous,
                    "current": current + 1,
                    "window_index": case((stored > idx, stored), else_=idx),
                    "expires_ms": case(
                        (t.c.expires_ms > _param("exp", expires), t.c.expires_ms),
                        else_=_param("exp2", expires),
                    ),
                },
                where=rule,
            )
            .returning(t.c.current)
        )
        with _sql_errors("rate-limit hit"):
            with self._db.transaction() as conn:
                allowed = conn.execute(stmt).first() is not None
        self._maybe_purge(now_ms)
        return allowed

    def allows(self, key: str, limit: int, window: timedelta) -> bool:
        window_ms, now_ms = self._check(key, limit, window)
        index, elapsed = divmod(now_ms, window_ms)
        t = rate_limits
        query = select(t.c.window_index, t.c.current, t.c.previous).where(
            and_(t.c.window_ms == window_ms, t.c.key == _stored_key(key))
        )
        with _sql_errors("rate-limit read"):
            with self._db.engine.connect() as conn:
                row = conn.execute(query).first()
        if row is None:
            return True
        stored, current, previous = int(row.window_index), int(row.current), int(row.previous)
        if stored >= index:
            pass
        elif stored == index - 1:
            current, previous = 0, current
        else:
            current, previous = 0, 0
        return sliding_window_allows(previous, current, elapsed, window_ms, limit)

    def purge(self) -> int:
        """Delete the rows of keys idle for two windows; returns how many."""
        now_ms = int(self._clock() * 1000)
        with _sql_errors("rate-limit purge"):
            with self._db.transaction() as conn:
                result = conn.execute(delete(rate_limits).where(rate_limits.c.expires_ms < now_ms))
        return int(result.rowcount or 0)

    def _check(self, key: str, limit: int, window: timedelta) -> tuple[int, int]:
        window_ms = validate_hit(key, limit, window)
        if window_ms * limit >= _MAX_WINDOW_TIMES_LIMIT:
            raise ValueError("window * limit too large")
        return window_ms, int(self._clock() * 1000)

    def _maybe_purge(self, now_ms: int) -> None:
        with self._lock:
            self._hits += 1
            due = self._hits % self._purge_every == 0
        if due:
            try:
                self.purge()
            except InfraError:
                pass  # housekeeping only: the next purge retries


@contextmanager
def _sql_errors(operation: str) -> Iterator[None]:
    """Translate any SQLAlchemy failure raised inside the block into an :class:`InfraError`."""
    try:
        yield
    except OperationalError as exc:  # cannot connect, locked too long, server gone
        raise InfraUnavailable("sql", operation, type(exc).__name__) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise InfraUnavailable("sql", operation, type(exc).__name__) from exc
        raise InfraError("sql", operation, type(exc).__name__) from exc
    except SQLAlchemyError as exc:
        raise InfraError("sql", operation, type(exc).__name__) from exc
