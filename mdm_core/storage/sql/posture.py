"""SQL implementation of :class:`mdm_core.storage.posture.PostureStore`.

On PostgreSQL a check-in is recorded in ONE round trip: a statement whose CTEs read the
previous latest posture (from the statement's snapshot), upsert the latest row
(``seq = seq + 1``, serialised by the row lock the upsert takes), upsert the history slot,
touch ``devices.last_checkin_at`` and tell whether commands wait (so an idle check-in needs no
command query); it also reads, for the compliance hook that runs next in the same unit of
work, the owner's effective group names and the device's compliance state and rule failures
(left in the unit of work's :class:`~mdm_core.storage.sql.read_ahead.ReadAhead`, served once;
not when a concurrent check-in of the device committed in between: the snapshot predates
its compliance writes, so the hook reads them itself).
(``FOR UPDATE`` on the read would hide the row this same
statement updates, so it is not used: two check-ins of one device at the same instant may both
compare against the same previous posture, which only affects change detection.)
SQLite (embedded, in-process) runs the same steps as separate statements in one transaction.
Replacing the latest posture with a merged one (two reporting channels) is one statement on
PostgreSQL too.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from mdm_core.domain.errors import NotFound
from mdm_core.posture.merge import PostureSources
from mdm_core.posture.model import Posture
from mdm_core.storage.posture import RecordedPosture, StoredPosture
from mdm_core.storage.sql.encoding import as_utc, json_param
from mdm_core.storage.sql.read_ahead import (
    EFFECTIVE_GROUPS_CTE,
    ReadAhead,
    compliance_from_json,
    evaluation_state_key,
    failures_from_json,
    group_names_key,
)
from mdm_core.storage.sql.tables import devices, posture_history, posture_latest

__all__ = ["SqlPostureStore"]

#: How deep nested groups are followed (the directory mirror's limit).
MAX_NESTING = 64

_PG_RECORD = text(
    """
WITH RECURSIVE prev AS (
    SELECT seq, posture, sources FROM posture_latest WHERE device_id = :device_id
), latest AS (
    INSERT INTO posture_latest (device_id, seq, collected_at, received_at, posture, sources)
    VALUES (:device_id, 1, :collected_at, :received_at, CAST(:posture AS JSON),
            CAST(:sources AS JSON))
    ON CONFLICT (device_id) DO UPDATE SET
        seq = posture_latest.seq + 1,
        collected_at = EXCLUDED.collected_at,
        received_at = EXCLUDED.received_at,
        posture = EXCLUDED.posture,
        sources = EXCLUDED.sources
    RETURNING seq
), hist AS (
    INSERT INTO posture_history (device_id, slot, seq, collected_at, received_at, posture)
    SELECT :device_id, CAST(MOD(latest.seq, :ring) AS INTEGER), latest.seq, :collected_at,
           :received_at, CAST(:posture AS JSON)
    FROM latest
    ON CONFLICT (device_id, slot) DO UPDATE SET
        seq = EXCLUDED.seq,
        collected_at = EXCLUDED.collected_at,
        received_at = EXCLUDED.received_at,
        posture = EXCLUDED.posture
), dev AS (
    UPDATE devices SET last_checkin_at = :received_at WHERE id = :device_id
), owner AS (
    SELECT user_id FROM devices WHERE id = :device_id
), """
    + EFFECTIVE_GROUPS_CTE.format(user="(SELECT user_id FROM owner)")
    + """
SELECT latest.seq AS seq, (SELECT posture FROM prev) AS previous,
       (SELECT sources FROM prev) AS previous_sources,
       COALESCE((SELECT seq FROM prev), 0) AS previous_seq,
       EXISTS (
           SELECT 1 FROM commands
           WHERE device_id = :device_id AND status IN ('queued', 'delivered', 'not_now')
       ) AS commands_waiting,
       (SELECT user_id FROM owner) AS user_id,
       (SELECT json_agg(name) FROM directory_groups
        WHERE id IN (SELECT id FROM grp)) AS group_names,
       (SELECT row_to_json(c) FROM (
           SELECT state, outcome, reasons, policy_ids, evaluated_at FROM compliance_state
           WHERE device_id = :device_id) c) AS compliance,
       (SELECT json_agg(json_build_array(policy_id, rule_id, first_failed_at))
        FROM rule_failures WHERE device_id = :device_id) AS failures
FROM latest
"""
)

# Replacing the latest posture with a merged one: both rows in one round trip.
_PG_REPLACE = text(
    """
WITH latest AS (
    UPDATE posture_latest SET posture = CAST(:posture AS JSON),
                              sources = CAST(:sources AS JSON), collected_at = :collected_at
    WHERE device_id = :device_id AND seq = :seq
)
UPDATE posture_history SET posture = CAST(:posture AS JSON), collected_at = :collected_at
WHERE device_id = :device_id AND slot = :slot AND seq = :seq
"""
)


def _posture(value: Any) -> Posture:
    return Posture.model_validate(value)


class SqlPostureStore:
    def __init__(self, conn: Connection, dialect: str, read_ahead: ReadAhead | None = None) -> None:
        self.conn = conn
        self.dialect = dialect
        self.read_ahead = read_ahead

    def record(
        self,
        device_id: str,
        posture: Posture,
        *,
        received_at: datetime,
        history_length: int,
        sources: PostureSources | None = None,
    ) -> RecordedPosture:
        if history_length < 1:
            raise ValueError("history_length must be at least 1")
        encoded = posture.model_dump_json(exclude_defaults=True)
        params = {
            "device_id": device_id,
            "collected_at": posture.collected_at,
            "received_at": received_at,
            "posture": encoded,
            "ring": history_length,
            "sources": None if sources is None else json.dumps(sources.to_json()),
        }
        try:
            if self.dialect == "postgresql":
                row = self.conn.execute(_PG_RECORD, {**params, "max_nesting": MAX_NESTING}).one()
                if self.read_ahead is not None:
                    self._keep_reads(device_id, row)
                previous = None if row.previous is None else _posture(row.previous)
                return RecordedPosture(
                    seq=int(row.seq),
                    previous=previous,
                    commands_waiting=bool(row.commands_waiting),
                    previous_sources=PostureSources.from_json(row.previous_sources),
                )
            return self._record_sqlite(params)
        except IntegrityError as exc:
            raise NotFound(f"unknown device {device_id!r}") from exc

    def _keep_reads(self, device_id: str, row: Any) -> None:
        """What the compliance hook reads next, read by the same statement: only when no
        other check-in of this device committed between the statement's snapshot and its
        upsert (the upsert waited for it; its compliance writes are not in the snapshot)."""
        assert self.read_ahead is not None
        if int(row.previous_seq) + 1 != int(row.seq):
            return  # the hook reads the committed state itself
        if row.user_id is not None:
            self.read_ahead.put(group_names_key(row.user_id), frozenset(row.group_names or ()))
        self.read_ahead.put(
            evaluation_state_key(device_id),
            (compliance_from_json(device_id, row.compliance), failures_from_json(row.failures)),
        )

    def _record_sqlite(self, params: dict[str, Any]) -> RecordedPosture:
        device_id = params["device_id"]
        prev = self.conn.execute(
            select(posture_latest.c.seq, posture_latest.c.posture, posture_latest.c.sources).where(
                posture_latest.c.device_id == device_id
            )
        ).one_or_none()
        seq = 1 if prev is None else int(prev.seq) + 1
        values = {
            "device_id": device_id,
            "seq": seq,
            "collected_at": params["collected_at"],
            "received_at": params["received_at"],
            "posture": json_param("posture", self.dialect),
        }
        stored_sources = {"sources": json_param("sources", self.dialect)}
        text_params = {"posture": params["posture"], "sources": params["sources"]}
        latest = sqlite.insert(posture_latest).values({**values, **stored_sources})
        latest = latest.on_conflict_do_update(
            index_elements=[posture_latest.c.device_id],
            set_={
                k: latest.excluded[k]
                for k in ("seq", "collected_at", "received_at", "posture", "sources")
            },
        )
        self.conn.execute(latest, text_params)
        hist = sqlite.insert(posture_history).values({**values, "slot": seq % params["ring"]})
        hist = hist.on_conflict_do_update(
            index_elements=[posture_history.c.device_id, posture_history.c.slot],
            set_={k: hist.excluded[k] for k in ("seq", "collected_at", "received_at", "posture")},
        )
        self.conn.execute(hist, {"posture": params["posture"]})
        self.conn.execute(
            update(devices)
            .where(devices.c.id == device_id)
            .values(last_checkin_at=params["received_at"])
        )
        return RecordedPosture(
            seq=seq,
            previous=None if prev is None else _posture(prev.posture),
            previous_sources=None if prev is None else PostureSources.from_json(prev.sources),
        )

    def replace_latest(
        self,
        device_id: str,
        seq: int,
        posture: Posture,
        sources: PostureSources,
        *,
        history_length: int,
    ) -> None:
        encoded = posture.model_dump_json(exclude_defaults=True)
        params = {"posture": encoded, "sources": json.dumps(sources.to_json())}
        if self.dialect == "postgresql":
            self.conn.execute(
                _PG_REPLACE,
                {
                    **params,
                    "collected_at": posture.collected_at,
                    "device_id": device_id,
                    "seq": seq,
                    "slot": seq % history_length,
                },
            )
            return
        param = json_param("posture", self.dialect)
        self.conn.execute(
            update(posture_latest)
            .where(posture_latest.c.device_id == device_id, posture_latest.c.seq == seq)
            .values(
                posture=param,
                sources=json_param("sources", self.dialect),
                collected_at=posture.collected_at,
            ),
            params,
        )
        self.conn.execute(
            update(posture_history)
            .where(
                posture_history.c.device_id == device_id,
                posture_history.c.slot == seq % history_length,
                posture_history.c.seq == seq,
            )
            .values(posture=param, collected_at=posture.collected_at),
            {"posture": encoded},
        )

    def latest(self, device_id: str) -> StoredPosture | None:
        row = self.conn.execute(
            select(
                posture_latest.c.seq, posture_latest.c.received_at, posture_latest.c.posture
            ).where(posture_latest.c.device_id == device_id)
        ).one_or_none()
        if row is None:
            return None
        return StoredPosture(
            device_id, int(row.seq), as_utc(row.received_at), _posture(row.posture)
        )

    def history(self, device_id: str, limit: int | None = None) -> list[StoredPosture]:
        stmt = (
            select(posture_history.c.seq, posture_history.c.received_at, posture_history.c.posture)
            .where(posture_history.c.device_id == device_id)
            .order_by(posture_history.c.seq.desc())
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return [
            StoredPosture(device_id, int(r.seq), as_utc(r.received_at), _posture(r.posture))
            for r in self.conn.execute(stmt)
        ]
