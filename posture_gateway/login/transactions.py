"""Server-side login transactions: what a sign-in remembers between its pages.

The browser's session cookie holds only an unguessable transaction id (256 bits); the
transaction itself — the authorize parameters, who the user is, the device-check nonce — lives
in a :class:`LoginTransactionStore` shared by every gateway process, with an expiry. So a
60 KB ``state`` cannot become a 60 KB cookie, a cookie never carries protocol data, and a
sign-in started on one worker continues on any other. Both the OIDC login
(:mod:`posture_gateway.oidc.login`) and Entra EAM (:mod:`posture_gateway.integrations.entra_eam`)
use the
one store the app was given (built by :func:`build_store`, read with :func:`login_transactions`).

- :class:`SqlLoginTransactionStore` (default): the ``gateway_login_transactions`` table on the
  shared database, rows keyed by the SHA-256 of the id (a read of the table gives no usable
  cookie), expired rows swept now and then;
- :class:`RedisLoginTransactionStore` (when ``redis_url`` is set): ``SET key json EXAT``;
  updates keep the expiry (``XX KEEPTTL``); :meth:`take` is ``GETDEL``.

Every failure of the backing store raises (callers answer 503: no sign-in without it).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from flask import Flask, current_app
from redis import Redis
from sqlalchemy import and_, delete, insert, select, update

from mdm_core.domain.infra_errors import redis_errors
from mdm_core.redis_backends.client import connect_redis, require_timeouts
from mdm_core.storage.sql.database import Database
from posture_gateway.oidc.tables import gateway_login_transactions

__all__ = [
    "EXTENSION_KEY",
    "MAX_TRANSACTION_BYTES",
    "LoginTransactionStore",
    "RedisLoginTransactionStore",
    "SqlLoginTransactionStore",
    "TransactionTooLarge",
    "build_store",
    "install",
    "login_transactions",
]

EXTENSION_KEY = "posture_login_transactions"
#: The largest transaction kept (the bounded authorize parameters fit many times over).
MAX_TRANSACTION_BYTES = 32 * 1024
_SWEEP_EVERY = 64


class TransactionTooLarge(ValueError):
    """The transaction's JSON is over :data:`MAX_TRANSACTION_BYTES` (refused, not stored)."""


def _digest(tx_id: str) -> str:
    return hashlib.sha256(tx_id.encode("utf-8")).hexdigest()


def _encode(data: dict[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    if len(text) > MAX_TRANSACTION_BYTES:
        raise TransactionTooLarge(f"a login transaction is limited to {MAX_TRANSACTION_BYTES}")
    return text


class LoginTransactionStore(Protocol):
    """Expiring login transactions by unguessable id, shared by every process."""

    def create(self, data: dict[str, Any], ttl: timedelta) -> str:
        """Store ``data`` (JSON-serialisable) for ``ttl``; return its new id (URL-safe, 256
        bits). Raises :class:`TransactionTooLarge` for oversized data, and on store failure."""
        ...

    def get(self, tx_id: str) -> dict[str, Any] | None:
        """The live transaction ``tx_id``; ``None`` when unknown, expired, taken or empty id."""
        ...

    def put(self, tx_id: str, data: dict[str, Any]) -> bool:
        """Replace the data of live ``tx_id``, keeping its expiry; False when it is gone."""
        ...

    def take(self, tx_id: str) -> dict[str, Any] | None:
        """Remove and return live ``tx_id`` atomically: of two concurrent takes at most one
        gets the data; ``None`` when unknown, expired or already taken."""
        ...


class SqlLoginTransactionStore:
    """Login transactions in the ``gateway_login_transactions`` table."""

    def __init__(
        self, database: Database, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        if database is None:
            raise ValueError("SqlLoginTransactionStore needs a database")
        self._db = database
        self._clock = clock
        self._created = 0

    def create(self, data: dict[str, Any], ttl: timedelta) -> str:
        if ttl <= timedelta(0):
            raise ValueError("a transaction needs a positive time to live")
        text = _encode(data)
        tx_id = secrets.token_urlsafe(32)
        now = self._clock()
        table = gateway_login_transactions
        with self._db.transaction() as conn:
            conn.execute(
                insert(table).values(tx_hash=_digest(tx_id), data=text, expires_at=now + ttl)
            )
            self._created += 1
            if self._created % _SWEEP_EVERY == 0:
                conn.execute(delete(table).where(table.c.expires_at <= now))
        return tx_id

    def _live(self, tx_id: str) -> Any:
        table = gateway_login_transactions
        return and_(table.c.tx_hash == _digest(tx_id), table.c.expires_at > self._clock())

    def get(self, tx_id: str) -> dict[str, Any] | None:
        if not tx_id:
            return None
        table = gateway_login_transactions
        with self._db.transaction() as conn:
            text = conn.execute(select(table.c.data).where(self._live(tx_id))).scalar()
        return _decode(text)

    def put(self, tx_id: str, data: dict[str, Any]) -> bool:
        if not tx_id:
            return False
        text = _encode(data)
        table = gateway_login_transactions
        with self._db.transaction() as conn:
            result = conn.execute(update(table).where(self._live(tx_id)).values(data=text))
        return int(result.rowcount) == 1

    def take(self, tx_id: str) -> dict[str, Any] | None:
        if not tx_id:
            return None
        table = gateway_login_transactions
        with self._db.transaction() as conn:
            text = conn.execute(select(table.c.data).where(self._live(tx_id))).scalar()
            if text is None:
                return None
            # The DELETE's row count decides between concurrent takes.
            result = conn.execute(delete(table).where(table.c.tx_hash == _digest(tx_id)))
        return _decode(text) if int(result.rowcount) == 1 else None


def _decode(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str | bytes):
        return None
    data = json.loads(text)  # written by _encode: trusted
    return data if isinstance(data, dict) else None


class RedisLoginTransactionStore:
    """Login transactions as self-expiring Redis keys."""

    def __init__(self, client: Redis, *, prefix: str = "posture:login:") -> None:
        require_timeouts(client)
        self._redis = client
        self._prefix = prefix

    def _key(self, tx_id: str) -> str:
        return self._prefix + _digest(tx_id)

    def create(self, data: dict[str, Any], ttl: timedelta) -> str:
        if ttl <= timedelta(0):
            raise ValueError("a transaction needs a positive time to live")
        text = _encode(data)
        tx_id = secrets.token_urlsafe(32)
        exat = math.ceil((datetime.now(UTC) + ttl).timestamp())
        with redis_errors("SET NX EXAT"):
            self._redis.set(self._key(tx_id), text.encode(), nx=True, exat=exat)
        return tx_id

    def get(self, tx_id: str) -> dict[str, Any] | None:
        if not tx_id:
            return None
        with redis_errors("GET"):
            return _decode(self._redis.get(self._key(tx_id)))

    def put(self, tx_id: str, data: dict[str, Any]) -> bool:
        if not tx_id:
            return False
        text = _encode(data)
        with redis_errors("SET XX KEEPTTL"):
            return bool(self._redis.set(self._key(tx_id), text.encode(), xx=True, keepttl=True))

    def take(self, tx_id: str) -> dict[str, Any] | None:
        if not tx_id:
            return None
        with redis_errors("GETDEL"):
            return _decode(self._redis.getdel(self._key(tx_id)))


def build_store(database: Database, redis_url: str | None) -> LoginTransactionStore:
    """The store for this deployment: Redis when ``redis_url`` is set, else the database."""
    if redis_url:
        return RedisLoginTransactionStore(connect_redis(redis_url))
    return SqlLoginTransactionStore(database)


def install(app: Flask, store: LoginTransactionStore) -> None:
    """Keep ``store`` as ``app``'s one login transaction store."""
    app.extensions[EXTENSION_KEY] = store


def login_transactions() -> LoginTransactionStore:
    """The current app's store (installed by the app factory before any view runs)."""
    store: LoginTransactionStore = current_app.extensions[EXTENSION_KEY]
    return store
