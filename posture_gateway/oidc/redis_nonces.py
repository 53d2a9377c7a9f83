"""Redis implementation of :class:`posture_gateway.access.nonces.NonceStore` (shared, expiring).

Used when Redis is configured (``redis_url``): every gateway process sees the same nonces
without a database write per login or decision. A nonce is the key
``<prefix><sha256(purpose, nonce)>`` (the digest of :mod:`posture_gateway.oidc.sql_nonces`), so
it is found only for the purpose it was issued for; consumed for another purpose it is
unknown and stays live.

- ``issue``: ``SET key "" NX PX <ttl>``: Redis forgets it at expiry by itself.
- ``consume``: ``DEL key``: the reply (1 or 0) says who won, atomically across processes.
- ``redis_key``: that key, so a login proof's verifier can send the ``DEL`` in the round trip
  of its replay record (:class:`mdm_core.device.proof.RedisSpendable`).

Fails closed: a Redis failure raises :class:`mdm_core.domain.infra_errors.InfraError` (no
nonce is issued; a consume that cannot be done is no consume). The client must be built
with timeouts (:func:`mdm_core.redis_backends.client.connect_redis`).
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta

from redis import Redis

from mdm_core.domain.infra_errors import redis_errors
from mdm_core.redis_backends.client import require_timeouts
from posture_gateway.oidc.sql_nonces import nonce_digest

__all__ = ["RedisNonceStore"]


class RedisNonceStore:
    """Single-use nonces as self-expiring Redis keys."""

    def __init__(self, client: Redis, *, prefix: str = "posture:nonce:") -> None:
        require_timeouts(client)  # raises ValueError for None or a client without timeouts
        self._redis = client
        self._prefix = prefix

    def issue(self, ttl: timedelta, *, purpose: str) -> str:
        if ttl <= timedelta(0):
            raise ValueError("a nonce needs a positive time to live")
        if not purpose:
            raise ValueError("a nonce needs a purpose")
        px = max(1, math.ceil(ttl.total_seconds() * 1000))
        for _ in range(3):  # a collision of 256 random bits does not happen; never reuse
            nonce = secrets.token_urlsafe(32)
            key = self._prefix + nonce_digest(purpose, nonce)
            with redis_errors("SET NX PX"):
                if self._redis.set(key, b"", nx=True, px=px):
                    return nonce
        raise RuntimeError("could not issue a fresh nonce")

    def redis_key(self, nonce: str, *, purpose: str) -> str | None:
        """The key whose ``DEL`` spends ``nonce`` for ``purpose`` (``None`` for no nonce)."""
        if not purpose:
            raise ValueError("a nonce is consumed for a purpose")
        return self._prefix + nonce_digest(purpose, nonce) if nonce else None

    def consume(self, nonce: str, *, purpose: str) -> bool:
        if not purpose:
            raise ValueError("a nonce is consumed for a purpose")
        if not nonce:
            return False
        with redis_errors("DEL"):
            return int(self._redis.delete(self._prefix + nonce_digest(purpose, nonce))) == 1
