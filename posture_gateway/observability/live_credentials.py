"""The number that must be zero: ``posture_noncompliant_devices_with_live_credentials``.

A gauge computed at scrape time by ONE SQL query over the gateway's database (so it is the
same on every process and survives restarts): how many devices that must not be used to get
in still hold a usable credential. A device must not be used when its status is
``quarantined``, ``pending_verification``, ``retired`` or ``wiped``, or its last compliance
verdict refuses access (outcome ``block``, or state ``quarantined``). A usable credential is a
live SSO session (not revoked, neither expiry passed), a refresh token (not revoked, not
expired) or an access token that has not expired (and is not revoked).

``warn`` and ``restrict`` are non-compliant states that still allow access (with a notice, or
reduced scopes), by policy: devices in them are not counted. Every degrading event revokes in
its own transaction (:mod:`mdm_core.domain.device_lifecycle`), so a value above zero means a
revocation was missed: alert on ``> 0`` (and on the series being absent or NaN: NaN is what a
failed query reports, never a reassuring 0).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import and_, exists, func, or_, select

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import compliance_state, devices
from posture_gateway.oidc.tables import gateway_sso_sessions as sessions
from posture_gateway.oidc.tables import oidc_tokens as tokens

__all__ = [
    "GAUGE",
    "UNTRUSTED_STATUSES",
    "noncompliant_devices_with_live_credentials",
    "LiveCredentialsCollector",
    "credentials_registry",
]

log = logging.getLogger(__name__)

GAUGE = "posture_noncompliant_devices_with_live_credentials"
UNTRUSTED_STATUSES = ("quarantined", "pending_verification", "retired", "wiped")


def _query(now: datetime) -> object:
    untrusted = or_(
        devices.c.status.in_(UNTRUSTED_STATUSES),
        compliance_state.c.outcome == "block",
        compliance_state.c.state == "quarantined",
    )
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
    database: Database, now: datetime | None = None
) -> int:
    """The gauge's value now (one query). Raises on a storage error."""
    with database.engine.connect() as conn:
        return int(conn.execute(_query(now or datetime.now(UTC))).scalar_one())  # type: ignore[call-overload]


class LiveCredentialsCollector(Collector):
    """Yields the gauge at each scrape; NaN (and a log line) when the query fails."""

    def __init__(self, database: Database, clock: Callable[[], datetime] | None = None) -> None:
        if database is None:
            raise ValueError("LiveCredentialsCollector needs a database")
        self._db = database
        self._clock = clock or (lambda: datetime.now(UTC))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            GAUGE,
            "Devices that must not get in (quarantined, retired, wiped, pending verification, "
            "or blocked by posture) holding a live session, refresh token or unexpired access "
            "token. Must be 0.",
        )
        try:
            value = float(noncompliant_devices_with_live_credentials(self._db, self._clock()))
        except Exception:
            log.exception("could not compute %s", GAUGE)
            value = float("nan")
        gauge.add_metric([], value)
        yield gauge


def credentials_registry(database: Database) -> CollectorRegistry:
    """A registry holding only this gauge (scraped beside the process counters)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCredentialsCollector(database))
    return registry
