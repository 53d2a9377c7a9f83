"""The number that must be zero: ``posture_noncompliant_devices_with_live_credentials``.

A gauge computed at scrape time by ONE SQL query over the gateway's database (so it is the
same on every process and survives restarts): how many devices that must not be used to get
in still hold a usable credential. A device must not be used when its status is
``quarantined``, ``pending_verification``, ``retired`` or ``wiped``, or its last compliance
verdict refuses access (outcome ``block``, or state ``quarantined``). A usable credential is a
live SSO session (not revoked, neither expiry passed), a refresh token (not revoked, not
expired) or an access token that has not expired (and is not revoked).

A device that went silent counts too, before anything recorded its verdict: status ``active``
or ``pending_verification`` and latest posture received before ``silent_before`` (the caller
passes ``now - (the largest enforced max_posture_age + SILENT_GRACE)``, see
:func:`silent_cutoff`): stale for every policy, so blocked at its next decision whatever
policies apply, and the stale-posture sweep (:mod:`mdm_core.policy.staleness`) should have
blocked and revoked it within ``SILENT_GRACE``.

``warn`` and ``restrict`` are non-compliant states that still allow access (with a notice, or
reduced scopes), by policy: devices in them are not counted. Every degrading event revokes in
its own transaction (:mod:`mdm_core.domain.device_lifecycle`), so a value above zero means a
revocation was missed: alert on ``> 0`` (and on the series being absent or NaN: NaN is what a
failed query reports, never a reassuring 0).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, exists, func, or_, select

from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.errors import PolicySetUnavailable
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import compliance_state, devices, posture_latest
from posture_gateway.oidc.tables import gateway_sso_sessions as sessions
from posture_gateway.oidc.tables import oidc_tokens as tokens

__all__ = [
    "GAUGE",
    "UNTRUSTED_STATUSES",
    "noncompliant_devices_with_live_credentials",
    "LiveCredentialsCollector",
    "SILENT_GRACE",
    "silent_cutoff",
    "credentials_registry",
]

log = logging.getLogger(__name__)

GAUGE = "posture_noncompliant_devices_with_live_credentials"
UNTRUSTED_STATUSES = ("quarantined", "pending_verification", "retired", "wiped")
#: How long past the largest max_posture_age a silent device may keep its credentials before
#: the gauge counts it: the sweep's lease (2 min) and two of its ticks (30 s each), rounded up.
SILENT_GRACE = timedelta(minutes=5)


def silent_cutoff(
    policies: CompiledPolicySet, now: datetime, grace: timedelta = SILENT_GRACE
) -> datetime | None:
    """Received before this, a device is stale for every enforced policy (``None``: none)."""
    ages = [p.max_posture_age for p in policies.compliance if p.enforce]
    if not ages:
        return None
    return now - max(ages) - grace


def _query(now: datetime, silent_before: datetime | None = None) -> object:
    conditions = [
        devices.c.status.in_(UNTRUSTED_STATUSES),
        compliance_state.c.outcome == "block",
        compliance_state.c.state == "quarantined",
    ]
    if silent_before is not None:
        conditions.append(
            exists().where(
                and_(
                    posture_latest.c.device_id == devices.c.id,
                    posture_latest.c.received_at < silent_before,
                )
            )
        )
    untrusted = or_(*conditions)
    live_token = exists().where(
        and_(
            tokens.c.device_id == devices.c.id,
            tokens.c.revoked_at.is_(None),
            or_(
                tokens.c.access_expires_at > now,
                and_(
                    tokens.c.refresh_token_hash.is_not(None),
                    tokens.c.refresh_expires_at > now,
                ),
            ),
        )
    )
    live_session = exists().where(
        and_(
            sessions.c.device_id == devices.c.id,
            sessions.c.revoked_at.is_(None),
            sessions.c.idle_expires_at > now,
            sessions.c.absolute_expires_at > now,
        )
    )
    return (
        select(func.count())
        .select_from(
            devices.outerjoin(compliance_state, compliance_state.c.device_id == devices.c.id)
        )
        .where(and_(untrusted, or_(live_token, live_session)))
    )


def noncompliant_devices_with_live_credentials(
    database: Database, now: datetime | None = None, silent_before: datetime | None = None
) -> int:
    """The gauge's value now (one query), counting devices silent since before
    ``silent_before`` too when given. Raises on a storage error."""
    query = _query(now or datetime.now(UTC), silent_before)
    with database.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())  # type: ignore[call-overload]


class LiveCredentialsCollector(Collector):
    """Yields the gauge at each scrape; NaN (and a log line) when the query fails."""

    def __init__(
        self,
        database: Database,
        clock: Callable[[], datetime] | None = None,
        policies: Callable[[], CompiledPolicySet] | None = None,
    ) -> None:
        """``policies``: the set in force, for the silent-device cutoff (``None``: silent
        devices are counted only once their verdict is recorded)."""
        if database is None:
            raise ValueError("LiveCredentialsCollector needs a database")
        self._db = database
        self._clock = clock or (lambda: datetime.now(UTC))
        self._policies = policies

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            GAUGE,
            "Devices that must not get in (quarantined, retired, wiped, pending verification, "
            "or blocked by posture) holding a live session, refresh token or unexpired access "
            "token. Must be 0.",
        )
        try:
            now = self._clock()
            cutoff = self._silent_cutoff(now)
            value = float(noncompliant_devices_with_live_credentials(self._db, now, cutoff))
        except Exception:
            log.exception("could not compute %s", GAUGE)
            value = float("nan")
        gauge.add_metric([], value)
        yield gauge

    def _silent_cutoff(self, now: datetime) -> datetime | None:
        if self._policies is None:
            return None
        try:
            policies = self._policies()
        except PolicySetUnavailable:  # every decision blocks: nothing can be used to get in
            return None
        return silent_cutoff(policies, now)


def credentials_registry(
    database: Database, policies: Callable[[], CompiledPolicySet] | None = None
) -> CollectorRegistry:
    """A registry holding only this gauge (scraped beside the process counters)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCredentialsCollector(database, policies=policies))
    return registry
