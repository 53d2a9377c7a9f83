"""Whether the shared backends answer right now: the gate in front of issuing anything.

With ``redis_url`` configured, nonces, login transactions, the event bus and rate limits live
on Redis. A grant that needs none of them (a refresh, a code exchange, client credentials all
read PostgreSQL only) could still be answered while Redis is down, but the deployment is
then degraded — revocation events do not travel, limits are not counted — and zero tolerance
says no token is issued while a backend is down (``DESIGN.md`` section 3). So the token
endpoint asks :func:`require_shared_backends` first: one ``PING`` (bounded by the client's
timeout, about a second) on a client kept per core; it raises
:class:`~mdm_core.domain.infra_errors.InfraUnavailable` when Redis does not answer. Without
Redis (the embedded default) there is nothing to check. ``/readyz`` uses the same check.
"""

from __future__ import annotations

import sqlite3
import threading

import redis
from sqlalchemy.exc import SQLAlchemyError

from mdm_core.domain.infra_errors import InfraError, redis_errors
from mdm_core.redis_backends.client import connect_redis
from mdm_core.runtime import MdmCore

__all__ = ["is_backend_outage", "require_shared_backends"]

_CLIENT_KEY = "backend_check_redis"
_lock = threading.Lock()


def _client(core: MdmCore, url: str) -> redis.Redis:
    with _lock:
        client = core.extras.get(_CLIENT_KEY)
        if not isinstance(client, redis.Redis):
            client = connect_redis(url, retries=0)
            core.extras[_CLIENT_KEY] = client
        return client


def require_shared_backends(core: MdmCore) -> None:
    """Return when Redis (if configured) answers ``PING``; raise ``InfraUnavailable`` if not."""
    url = core.config.redis_url
    if not url:
        return
    with redis_errors("PING"):
        _client(core, url).ping()


def is_backend_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a store or shared-backend failure rather than a
    refusal: SQLAlchemy and driver errors, :class:`InfraError`. Callers answer 503 for these
    ("cannot say now") instead of a 401/403 that blames the caller's credentials."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (SQLAlchemyError, InfraError, sqlite3.Error)):
            return True
        if type(current).__module__.startswith("psycopg"):
            return True
        current = current.__cause__ or current.__context__
    return False
