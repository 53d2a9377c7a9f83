"""The gateway side of the read model: verified bearer tokens and resolved users, cached.

Both decorate the gateway's own implementations and are version-checked on every call
against the rows they depend on (:mod:`mdm_core.read_model.versions`):

- :class:`CachedBearerTokens` (the posture API's ``AccessTokenVerifier``): an access token of
  our OP is verified once (signature, claims, grant store, device binding) and its claims
  are served from the cache until it expires, while ``tokens`` (any revocation or rotation
  in ``oidc_tokens``), ``directory`` and, for a device-bound token, ``device:<id>`` keep the
  versions it was verified at. Revocation therefore refuses it on the very next request of
  every process. Only successes are cached: a refused token is verified again each time.
- :class:`CachedUserDirectory`: a resolved (already linked, active) user; ``directory``
  guards it. Unresolved identities are not cached (the resolver audits their refusals).

:func:`one_transaction` makes each of the posture API's requests one database transaction on
PostgreSQL and one :func:`~mdm_core.read_model.scope.version_scope`: the versions of every key
the request needs (``tokens``, ``directory``, the proof's ``device:<kid>``, named up front by
the view with :func:`~mdm_core.read_model.scope.want_versions`) are read ONCE, in one
autocommit statement, by the first reader (the token check); the user lookup, the proof's
device identity and the decision's state reuse them.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from flask import current_app

from idp_connectors.identity import ExternalIdentity, UserDirectory
from mdm_core.read_model import DIRECTORY, TOKENS, device_key
from mdm_core.read_model.cache import MISS, VersionedCache
from mdm_core.read_model.scope import VersionReader, version_scope
from mdm_core.storage.sql.uow import SqlStorage
from mdm_core.storage.sql.version_triggers import GATEWAY_WATCHES
from posture_gateway.oidc.server import OIDCProvider

__all__ = [
    "CachedBearerTokens",
    "CachedUserDirectory",
    "TOKEN_WATCH",
    "one_transaction",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: Revocation, rotation or purge of an issued token bumps ``tokens`` (issuing does not).
TOKEN_WATCH = GATEWAY_WATCHES[0]  # created by migration 0006_readmodel


class CachedBearerTokens:
    """Access tokens of our OP (the posture API's bearer tokens), verified once per token."""

    def __init__(
        self, provider: OIDCProvider, storage: SqlStorage, cache: VersionedCache[object]
    ) -> None:
        if provider is None or storage is None or cache is None:
            raise ValueError("CachedBearerTokens needs the provider, the storage and a cache")
        self._provider = provider
        self._storage = storage
        self._cache = cache
        self._versions = VersionReader(storage)
        self._device_of: dict[str, str | None] = {}  # token digest -> bound device (or none)

    def verify_access_token(self, token: str) -> dict[str, Any]:
        digest = hashlib.sha256(token.encode()).hexdigest()
        known = digest in self._device_of
        device = self._device_of.get(digest)
        keys = [TOKENS, DIRECTORY] + ([device_key(device)] if device else [])
        seen = self._versions.versions(keys)
        versions = tuple(seen[k] for k in keys)
        found = self._cache.get(("token", digest), versions)
        if found is not MISS:
            assert isinstance(found, dict)
            return dict(found)
        issued = self._provider.bearer_token(token)  # raises on any refusal: not cached
        claims = dict(issued.claims)
        bound = issued.record.subject.device_id
        if not known or bound != device:
            if len(self._device_of) > 100_000:
                self._device_of.clear()
            self._device_of[digest] = bound
            if bound is not None:  # its device's version was not read first: cache next time
                return claims
        ttl = float(claims["exp"]) - time.time()
        if ttl > 0:
            self._cache.put(("token", digest), versions, dict(claims), ttl_s=ttl)
        return claims


class CachedUserDirectory:
    """:class:`UserDirectory` with resolved users cached under the ``directory`` version."""

    def __init__(
        self, inner: UserDirectory, storage: SqlStorage, cache: VersionedCache[object]
    ) -> None:
        if inner is None or storage is None or cache is None:
            raise ValueError("CachedUserDirectory needs a directory, the storage and a cache")
        self._inner = inner
        self._storage = storage
        self._cache = cache
        self._versions = VersionReader(storage)

    def resolve(self, identity: ExternalIdentity) -> str | None:
        versions = (self._versions.versions((DIRECTORY,))[DIRECTORY],)
        found = self._cache.get(("resolve", identity), versions)
        if isinstance(found, str):
            return found
        user_id = self._inner.resolve(identity)
        if user_id is not None:
            self._cache.put(("resolve", identity), versions, user_id)
        return user_id

    def __getattr__(self, name: str) -> Any:  # account() and friends of the inner resolver
        return getattr(self._inner, name)


def one_transaction(view: Callable[P, R]) -> Callable[P, R]:
    """Run ``view`` in one version scope (``tokens`` and ``directory`` wanted) and, on
    PostgreSQL, in ONE database transaction for its writes (SQL nonce, proof replay record):
    psycopg opens it at the first statement, so a request with no write (Redis nonces and
    replay) has no BEGIN/COMMIT at all, and the version read is autocommit. On SQLite each
    step keeps its own short transaction: a shared one would hold the file's write lock while
    the request waits for its audit record, which the group-commit writer needs."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        database = current_app.extensions["posture"].core.database
        with version_scope(TOKENS, DIRECTORY):
            if not database.is_postgres:
                return view(*args, **kwargs)
            with database.shared_transaction():
                return view(*args, **kwargs)

    return wrapper
