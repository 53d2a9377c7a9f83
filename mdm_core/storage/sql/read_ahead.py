"""Read-ahead within one unit of work: rows a statement read for a later store call.

The check-in's posture statement on PostgreSQL (:mod:`mdm_core.storage.sql.posture`) also
reads what the compliance hook asks for next: the device owner's effective group names and
the device's stored compliance state with its rule failures. It leaves them here; the
membership and compliance stores of the same unit of work serve the next call from it
instead of a round trip. Each value is served ONCE (``take``), and a store that writes the
data drops it first, so a read-ahead can never outlive the state it was read from.

Also owns :data:`EFFECTIVE_GROUPS_CTE`, the recursive CTE both users share (cycle safe: rows
are ``(group id, depth)`` under ``UNION``; nesting cut at ``max_nesting`` levels).
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Any

from mdm_core.storage.compliance import ComplianceRecord, ComplianceState
from mdm_core.storage.sql.encoding import as_utc

__all__ = [
    "EFFECTIVE_GROUPS_CTE",
    "ReadAhead",
    "compliance_from_json",
    "evaluation_state_key",
    "failures_from_json",
    "group_names_key",
]

#: ``grp(id, depth)``: the groups of the user ``:user_id`` (or of the user selected by the
#: SQL put in place of ``{user}``), directly and through nested groups.
EFFECTIVE_GROUPS_CTE = """
grp(id, depth) AS (
    SELECT group_id, 0 FROM directory_memberships
    WHERE member_kind = 'user' AND member_id = {user}
    UNION
    SELECT m.group_id, grp.depth + 1 FROM directory_memberships m
    JOIN grp ON m.member_kind = 'group' AND m.member_id = grp.id
    WHERE grp.depth < :max_nesting
)
"""


def group_names_key(user_id: str) -> tuple[str, str]:
    return ("group_names", user_id)


def evaluation_state_key(device_id: str) -> tuple[str, str]:
    return ("evaluation_state", device_id)


class ReadAhead:
    """Values read ahead in one unit of work, each served once."""

    def __init__(self) -> None:
        self._values: dict[Hashable, object] = {}

    def put(self, key: Hashable, value: object) -> None:
        self._values[key] = value

    def take(self, key: Hashable) -> object | None:
        """The value read ahead for ``key`` (then forgotten), or ``None``."""
        return self._values.pop(key, None)

    def drop(self, key: Hashable) -> None:
        """Forget ``key`` (its data is being written)."""
        self._values.pop(key, None)

    def clear(self) -> None:
        """Forget everything (a write whose reach is not one key)."""
        self._values.clear()


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value)))


def compliance_from_json(device_id: str, value: Any) -> ComplianceRecord | None:
    """The ``compliance_state`` row read as ``row_to_json`` (``None``: no row)."""
    if value is None:
        return None
    return ComplianceRecord(
        device_id=device_id,
        state=ComplianceState(value["state"]),
        outcome=value["outcome"],
        reasons=list(value["reasons"]),
        policy_ids=list(value["policy_ids"]),
        evaluated_at=_timestamp(value["evaluated_at"]),
    )


def failures_from_json(value: Any) -> dict[tuple[str, str], datetime]:
    """``rule_failures`` rows read as a JSON array of ``[policy_id, rule_id, first_failed_at]``."""
    if not value:
        return {}
    return {(str(p), str(r)): _timestamp(at) for p, r, at in value}
