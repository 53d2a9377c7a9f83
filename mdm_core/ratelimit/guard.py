"""Rate limits at a trust boundary: refuse, count, audit, and fail closed.

Owns :class:`RateGuard`, the one place that turns a :class:`~mdm_core.ratelimit.limiter.RateLimiter`
answer into what a boundary does with it:

- a hit over its limit raises :class:`~mdm_core.domain.errors.RateLimited` (429, ``Retry-After``)
  before anything is done, increments ``posture_rate_limit_refusals{limit}``, and writes one
  ``ratelimit.refused`` audit record per (limit, key) and window (a flood of refusals is one
  record, not a write per request an attacker sends);
- a limiter that fails raises :class:`~mdm_core.domain.errors.LimiterUnavailable` (503) and
  increments ``posture_rate_limiter_errors{limit}``: no limit, no service.

Keys name what is counted, e.g. ``enroll:src:<address>``; secrets (tokens) are hashed into
keys by the caller, never used as they are.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta

from prometheus_client import Counter

from mdm_core.domain.errors import LimiterUnavailable, RateLimited
from mdm_core.domain.infra_errors import InfraError
from mdm_core.ratelimit.limiter import RateLimiter
from mdm_core.storage.uow import Storage

__all__ = ["LIMIT_NAMES", "LIMITER_ERRORS", "REFUSALS", "RateGuard", "retry_after_s"]

log = logging.getLogger(__name__)

#: Every limit a boundary applies: the closed set of ``limit`` label values (metrics stay
#: bounded; a new limit is added here).
LIMIT_NAMES = frozenset(
    {
        "enroll_source",
        "enroll_target",
        "login_source",
        "login_account",
        "scim_client",
        "scim_auth_source",
        "admin_auth_source",
    }
)


def _label(name: str) -> str:
    if name not in LIMIT_NAMES:
        raise ValueError(f"unknown rate limit {name!r} (add it to LIMIT_NAMES)")
    return name


REFUSALS = Counter("posture_rate_limit_refusals", "Requests refused by a rate limit.", ["limit"])
LIMITER_ERRORS = Counter(
    "posture_rate_limiter_errors", "Requests refused because the rate limiter failed.", ["limit"]
)


def retry_after_s(window: timedelta) -> int:
    """Seconds a refused client should wait: one window (an upper bound of the real wait)."""
    return max(1, math.ceil(window.total_seconds()))


class RateGuard:
    """Applies limits on one shared limiter, auditing refusals in ``storage``."""

    def __init__(self, limiter: RateLimiter, storage: Storage) -> None:
        if limiter is None or storage is None:
            raise ValueError("RateGuard needs a limiter and storage")
        self.limiter = limiter
        self._storage = storage

    def hit(
        self, name: str, key: str, limit: int, window: timedelta, *, actor: str, subject: str
    ) -> None:
        """Count one request on ``key``; raise ``RateLimited`` when over ``limit`` per
        ``window`` (``name`` labels the metric and audit record), ``LimiterUnavailable``
        when the limiter fails."""
        try:
            allowed = self.limiter.hit(key, limit, window)
        except InfraError as exc:
            raise self.unavailable(name, exc) from exc
        if not allowed:
            raise self.refused(name, key, limit, window, actor=actor, subject=subject)

    def check(
        self, name: str, key: str, limit: int, window: timedelta, *, actor: str, subject: str
    ) -> None:
        """Like :meth:`hit` but counting nothing: for limits on failures, checked before the
        attempt and counted with :meth:`count_failure` after it failed."""
        try:
            allowed = self.limiter.allows(key, limit, window)
        except InfraError as exc:
            raise self.unavailable(name, exc) from exc
        if not allowed:
            raise self.refused(name, key, limit, window, actor=actor, subject=subject)

    def count_failure(self, name: str, key: str, limit: int, window: timedelta) -> None:
        """Count one failure on ``key``. The request already failed, so a limiter error here
        is logged and counted, not raised (the next :meth:`check` fails closed)."""
        try:
            self.limiter.hit(key, limit, window)
        except InfraError as exc:
            self.unavailable(name, exc)

    def failed(
        self, name: str, key: str, limit: int, window: timedelta, *, actor: str, subject: str
    ) -> None:
        """An attempt on ``key`` just failed (a wrong credential): raise ``RateLimited`` when
        ``key`` is already over ``limit`` failures per ``window``, else count this one. For
        limits on guessing that must never refuse a caller whose credential is right (it is
        checked first, and only its failure comes here)."""
        self.check(name, key, limit, window, actor=actor, subject=subject)
        self.count_failure(name, key, limit, window)

    def unavailable(self, name: str, exc: Exception) -> LimiterUnavailable:
        """Count a limiter failure and return the refusal to raise."""
        LIMITER_ERRORS.labels(_label(name)).inc()
        log.error("rate limiter failed (%s): %s; refusing", name, exc)
        return LimiterUnavailable("the rate limiter is unavailable; try again shortly")

    def refused(
        self, name: str, key: str, limit: int, window: timedelta, *, actor: str, subject: str
    ) -> RateLimited:
        """Count and audit (once per key and window) a refusal; return the error to raise."""
        REFUSALS.labels(_label(name)).inc()
        try:
            first = self.limiter.hit(f"audited:{key}", 1, window)
        except InfraError:
            first = False  # the refusal stands; only its audit record is skipped
        if first:
            try:
                with self._storage.unit_of_work() as uow:
                    uow.audit.record(
                        actor=actor[:128],
                        action="ratelimit.refused",
                        subject=subject[:200],
                        outcome="refused",
                        detail={
                            "limit": name,
                            "max": limit,
                            "window_s": window.total_seconds(),
                        },
                    )
            except Exception:  # auditing must not turn a 429 into a 500
                log.exception("could not audit a rate-limit refusal (%s)", name)
        return RateLimited(
            f"too many requests ({name}); retry later", retry_after=retry_after_s(window)
        )
