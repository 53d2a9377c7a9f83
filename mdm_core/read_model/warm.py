"""The bulk reads that fill the read model at worker start: a few statements, not one per device.

:func:`read_all_versions` reads every row of ``read_model_versions`` (one statement); THEN
:func:`read_fleet` reads, for the ``limit`` most recently checked-in devices, their identities
(record, public key, current certificate), latest postures, rule failures and their owners'
user contexts (effective groups of every owner in ONE recursive statement). The caller
(:meth:`~mdm_core.read_model.decision_reads.CachedDecisionReads.warm`) caches them under the
versions read first: a write landing between the two makes an entry look older than its data
(refetched by the next decision), never newer.

Each statement names the devices (or users) it covered, even those with no row behind them
(``LEFT JOIN`` from the device set): the set of the "most recent" devices can shift between
statements (a check-in elsewhere), and a device missing from one statement's set must not be
cached as "no posture" or a user as "no groups". Only what every statement covered is cached.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Subquery, select, text

from mdm_core.policy.model import UserContext
from mdm_core.posture.model import Posture
from mdm_core.storage.identity import DeviceIdentity
from mdm_core.storage.posture import StoredPosture
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.identity import IDENTITY_COLUMNS, IDENTITY_JOIN, identity_from_row
from mdm_core.storage.sql.tables import devices, posture_latest, read_model_versions, rule_failures

__all__ = [
    "DEFAULT_WARM_DEVICES",
    "Fleet",
    "cache_entries_for",
    "read_all_versions",
    "read_fleet",
]

#: How many devices a worker warms by default (``read_model.warm_devices``).
DEFAULT_WARM_DEVICES = 50_000
#: Cache entries a warmed device takes: identity, record, state, and (at most) its owner.
ENTRIES_PER_DEVICE = 4
#: Room left for what is not warmed (verified bearer tokens, resolved users, cold devices).
SPARE_ENTRIES = 10_000
#: The cache never gets smaller than this (the read model's size before warming).
MIN_CACHE_ENTRIES = 50_000
#: Nested groups are followed this deep (as :data:`mdm_core.directory.mirror.MAX_NESTING`).
MAX_NESTING = 64


def cache_entries_for(warm_devices: int) -> int:
    """The cache size that holds ``warm_devices`` warmed devices and their owners."""
    if warm_devices < 0:
        raise ValueError("warm_devices must be >= 0")
    return max(MIN_CACHE_ENTRIES, warm_devices * ENTRIES_PER_DEVICE + SPARE_ENTRIES)


@dataclass(slots=True)
class Fleet:
    """What :func:`read_fleet` read: only entries every statement covered."""

    identities: list[DeviceIdentity] = field(default_factory=list)  # most recent first
    postures: dict[str, StoredPosture | None] = field(default_factory=dict)
    failures: dict[str, dict[tuple[str, str], datetime]] = field(default_factory=dict)
    users: dict[str, UserContext] = field(default_factory=dict)


def read_all_versions(conn: Connection) -> Mapping[str, int]:
    """Every key's version (a key without a row has version 0)."""
    rows = conn.execute(select(read_model_versions.c.key, read_model_versions.c.version))
    return {str(r.key): int(r.version) for r in rows}


def _recent(limit: int) -> Subquery:
    return (
        select(devices.c.id, devices.c.user_id)
        .order_by(devices.c.last_checkin_at.desc().nulls_last(), devices.c.id)
        .limit(limit)
        .subquery("recent")
    )


# The owners of the recent devices, each with their effective group names: one row per
# (user, group), or one row with a NULL name for a user in no group (covered all the same).
# An offboarded user (``user_blocks``) is inactive, as ``user_context`` reads it.
_USERS = text(
    """
WITH RECURSIVE owners(user_id) AS (
    SELECT DISTINCT user_id FROM (
        SELECT user_id FROM devices
        ORDER BY last_checkin_at DESC NULLS LAST, id LIMIT :limit
    ) recent WHERE user_id IS NOT NULL
), grp(user_id, id, depth) AS (
    SELECT m.member_id, m.group_id, 0 FROM directory_memberships m
    JOIN owners o ON m.member_kind = 'user' AND m.member_id = o.user_id
    UNION
    SELECT grp.user_id, m.group_id, grp.depth + 1 FROM directory_memberships m
    JOIN grp ON m.member_kind = 'group' AND m.member_id = grp.id
    WHERE grp.depth < :max_nesting
)
SELECT u.id AS id, (u.active AND b.user_id IS NULL) AS active, g.name AS name
FROM owners o JOIN directory_users u ON u.id = o.user_id
LEFT JOIN user_blocks b ON b.user_id = u.id
LEFT JOIN (SELECT DISTINCT user_id, id FROM grp) eg ON eg.user_id = u.id
LEFT JOIN directory_groups g ON g.id = eg.id
"""
)


def read_fleet(conn: Connection, limit: int) -> Fleet:
    """The decision state of the ``limit`` most recently checked-in devices and their owners
    (four statements). Call it AFTER :func:`read_all_versions`."""
    fleet = Fleet()
    if limit <= 0:
        return fleet
    recent = _recent(limit)
    identities = select(*IDENTITY_COLUMNS).select_from(
        IDENTITY_JOIN.join(recent, recent.c.id == devices.c.id)
    )
    fleet.identities = [identity_from_row(r) for r in conn.execute(identities)]
    postures = select(
        recent.c.id.label("device_id"),
        posture_latest.c.seq,
        posture_latest.c.received_at,
        posture_latest.c.posture,
    ).select_from(recent.outerjoin(posture_latest, posture_latest.c.device_id == recent.c.id))
    for r in conn.execute(postures):
        fleet.postures[r.device_id] = (
            None
            if r.seq is None
            else StoredPosture(
                r.device_id, int(r.seq), as_utc(r.received_at), Posture.model_validate(r.posture)
            )
        )
    failures = select(
        recent.c.id.label("device_id"),
        rule_failures.c.policy_id,
        rule_failures.c.rule_id,
        rule_failures.c.first_failed_at,
    ).select_from(recent.outerjoin(rule_failures, rule_failures.c.device_id == recent.c.id))
    found: dict[str, dict[tuple[str, str], datetime]] = defaultdict(dict)
    for r in conn.execute(failures):
        covered = found[r.device_id]
        if r.policy_id is not None:
            covered[(r.policy_id, r.rule_id)] = as_utc(r.first_failed_at)
    fleet.failures = dict(found)
    groups: dict[str, set[str]] = defaultdict(set)
    active: dict[str, bool] = {}
    for r in conn.execute(_USERS, {"limit": limit, "max_nesting": MAX_NESTING}):
        active[r.id] = bool(r.active)
        if r.name is not None:
            groups[r.id].add(str(r.name))
    fleet.users = {
        uid: UserContext(id=uid, groups=frozenset(groups.get(uid, ())), active=is_active)
        for uid, is_active in active.items()
    }
    return fleet
