"""SQL implementation of :class:`posture_gateway.access.nonces.NonceStore` on the shared database.

The default when no Redis is configured: every gateway process sees the same nonces, so a
device check issued by one worker can be completed on another. A row is keyed by the SHA-256
of (purpose, nonce), so a nonce is found only for the purpose it was issued for: consumed
for another purpose it is unknown, and stays live. ``consume`` is one
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

__all__ = ["SqlNonceStore", "nonce_digest"]

_SWEEP_EVERY = 64  # issues between two sweeps of expired rows


def nonce_digest(purpose: str, nonce: str) -> str:
    """The key of ``nonce`` for ``purpose`` (shared with the Redis store)."""
    # Length-prefixed, so no (purpose, nonce) pair collides with another one's concatenation.
    material = f"{len(purpose)}:{purpose}\n{nonce}"
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


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

    def issue(self, ttl: timedelta, *, purpose: str) -> str:
        if ttl <= timedelta(0):
            raise ValueError("a nonce needs a positive time to live")
        if not purpose:
            raise ValueError("a nonce needs a purpose")
        nonce = secrets.token_urlsafe(32)
        now = self._clock()
        with self._db.transaction() as conn:
            conn.execute(
                insert(gateway_nonces).values(
                    nonce_hash=nonce_digest(purpose, nonce), expires_at=now + ttl
                )
            )
            self._issued += 1
            if self._issued % _SWEEP_EVERY == 0:
                conn.execute(delete(gateway_nonces).where(gateway_nonces.c.expires_at <= now))
        return nonce

    def consume(self, nonce: str, *, purpose: str) -> bool:
        if not purpose:
            raise ValueError("a nonce is consumed for a purpose")
        if not nonce:
            return False
        with self._db.transaction() as conn:
            result = conn.execute(
                delete(gateway_nonces).where(
                    and_(
                        gateway_nonces.c.nonce_hash == nonce_digest(purpose, nonce),
                        gateway_nonces.c.expires_at > self._clock(),
                    )
                )
            )
        return int(result.rowcount) == 1
