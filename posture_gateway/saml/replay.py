"""AuthnRequest IDs are accepted once: the replay guard of the SAML IdP's SSO endpoint.

A captured AuthnRequest (a signed one above all: its signature stays valid) must not start a
second login. Every request's ``ID`` is remembered, per issuing SP, in the core's replay store
(:class:`mdm_core.storage.replay.ReplayStore`, the one device proofs use): Redis when the
deployment has it (``SET NX EXAT``), else the ``used_proofs`` table of the shared database
(``INSERT ... ON CONFLICT DO NOTHING``) — so every process of the deployment refuses a request
ID any of them has seen. The key is ``saml-authn:`` + SHA-256 of the length-prefixed
(SP entity id, ID): bounded whatever the request says, and never a device proof's ``jti``.

An ID is remembered until the request could no longer be accepted anyway (its IssueInstant
plus ``saml.request_max_age`` plus the clock skew). A store that fails raises: the SSO endpoint
then refuses the request (fail closed).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from mdm_core.redis_backends.client import connect_redis
from mdm_core.redis_backends.replay import RedisReplayStore
from mdm_core.storage.replay import ReplayStore
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.replay import SqlReplayStore

__all__ = ["RequestReplayGuard", "replay_key"]

_PREFIX = "saml-authn:"


def replay_key(sp_entity_id: str, request_id: str) -> str:
    """The replay-store key of one SP's request ID (fits ``used_proofs.jti``, 128 chars)."""
    # length-prefixed: no (SP, ID) pair can spell another pair's key
    digest = hashlib.sha256(f"{len(sp_entity_id)}:{sp_entity_id}:{request_id}".encode()).hexdigest()
    return _PREFIX + digest


class RequestReplayGuard:
    """``first_use(sp, id, until)``: True the first time, False for a replayed request ID."""

    def __init__(self, database: Database, redis: ReplayStore | None = None) -> None:
        if database is None:
            raise ValueError("RequestReplayGuard needs a database")
        self._db = database
        self._redis = redis

    @classmethod
    def for_deployment(cls, database: Database, redis_url: str | None) -> RequestReplayGuard:
        """Redis when configured (shared, self-expiring), else the shared database."""
        redis = RedisReplayStore(connect_redis(redis_url)) if redis_url else None
        return cls(database, redis)

    def first_use(self, sp_entity_id: str, request_id: str, remember_until: datetime) -> bool:
        """Remember ``request_id`` of ``sp_entity_id`` until ``remember_until``; False when it
        was already seen (a replay). Atomic across processes; raises on a store failure."""
        if not request_id:
            return False
        key = replay_key(sp_entity_id, request_id)
        if self._redis is not None:
            return self._redis.remember(key, remember_until)
        with self._db.transaction() as conn:
            return SqlReplayStore(conn, self._db.dialect).remember(key, remember_until)
