"""SQL implementation of :class:`posture_gateway.nonces.NonceStore` on the shared database.

The default when no Redis is configured: every gateway process sees the same nonces, so a
device check issued by one worker can be completed on another. ``consume`` is one
``DELETE ... WHERE nonce_hash = ? AND expires_at > now``: the row count says who won.
Expired rows are swept now and then as new nonces are issued.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, insert

from mdm_core.storage.sql.database import Database
from posture_gateway.oidc.tables import gateway_nonces

__all__ = ["SqlNonceStore"]

_SWEEP_EVERY = 64  # issues between two sweeps of expired rows


def _digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()


class SqlNonceStore:
    """Single-use nonces in the ``gateway_nonces`` table."""

    def __init__(
        self, database: Database, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        if database is None:
            raise ValueError("SqlNonceStore needs a database")
        self._db = database
        self._clock = clock
        self._issued = 0

    def issue(self, ttl: timedelta) -> str:
        if ttl <= timedelta(0):
            raise ValueError("a nonce needs a positive time to live")
        nonce = secrets.token_urlsafe(32)
        now = self._clock()
        with self._db.transaction() as conn:
            conn.execute(
                insert(gateway_nonces).values(nonce_hash=_digest(nonce), expires_at=now + ttl)
            )
            self._issued += 1
            if self._issued % _SWEEP_EVERY == 0:
                conn.execute(delete(gateway_nonces).where(gateway_nonces.c.expires_at <= now))
        return nonce

    def consume(self, nonce: str) -> bool:
        if not nonce:
            return False
        with self._db.transaction() as conn:
            result = conn.execute(
                delete(gateway_nonces).where(
                    and_(
                        gateway_nonces.c.nonce_hash == _digest(nonce),
                        gateway_nonces.c.expires_at > self._clock(),
                    )
                )
            )
        return int(result.rowcount) == 1
