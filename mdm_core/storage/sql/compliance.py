"""SQL implementation of :class:`mdm_core.storage.compliance.ComplianceStore`."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, delete, insert, select, tuple_, update

from mdm_core.domain.errors import NotFound
from mdm_core.storage.compliance import ComplianceRecord, ComplianceState
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.read_ahead import ReadAhead, evaluation_state_key
from mdm_core.storage.sql.tables import compliance_state, devices, rule_failures

__all__ = ["SqlComplianceStore"]

# The device row anchors the joins: one row per failing rule (at least one), the state
# repeated on each. A primary-key lookup plus two index scans, one round trip.
_EVALUATION_STATE = (
    select(
        compliance_state.c.device_id,
        compliance_state.c.state,
        compliance_state.c.outcome,
        compliance_state.c.reasons,
        compliance_state.c.policy_ids,
        compliance_state.c.evaluated_at,
        rule_failures.c.policy_id,
        rule_failures.c.rule_id,
        rule_failures.c.first_failed_at,
    )
    .select_from(
        devices.outerjoin(compliance_state, compliance_state.c.device_id == devices.c.id).outerjoin(
            rule_failures, rule_failures.c.device_id == devices.c.id
        )
    )
    .where(devices.c.id == bindparam("device_id"))
)


def _record(row: Row[*tuple[Any, ...]]) -> ComplianceRecord:
    return ComplianceRecord(
        device_id=row.device_id,
        state=ComplianceState(row.state),
        outcome=row.outcome,
        reasons=list(row.reasons),
        policy_ids=list(row.policy_ids),
        evaluated_at=as_utc(row.evaluated_at),
    )


class SqlComplianceStore:
    def __init__(self, conn: Connection, dialect: str, read_ahead: ReadAhead | None = None) -> None:
        self.conn = conn
        self.dialect = dialect
        self.read_ahead = read_ahead

    def _forget_read_ahead(self, device_id: str) -> None:
        if self.read_ahead is not None:
            self.read_ahead.drop(evaluation_state_key(device_id))

    def _require_device(self, device_id: str) -> None:
        row = self.conn.execute(select(devices.c.id).where(devices.c.id == device_id)).first()
        if row is None:
            raise NotFound(f"unknown device {device_id!r}")

    def get_state(self, device_id: str) -> ComplianceRecord | None:
        row = self.conn.execute(
            select(compliance_state).where(compliance_state.c.device_id == device_id)
        ).one_or_none()
        if row is None:
            return None
        return _record(row)

    def put_state(self, record: ComplianceRecord) -> None:
        self._forget_read_ahead(record.device_id)
        self._require_device(record.device_id)
        values = {
            "state": record.state.value,
            "outcome": record.outcome,
            "reasons": record.reasons,
            "policy_ids": record.policy_ids,
            "evaluated_at": as_utc(record.evaluated_at),
        }
        result = self.conn.execute(
            update(compliance_state)
            .where(compliance_state.c.device_id == record.device_id)
            .values(**values)
        )
        if result.rowcount == 0:
            self.conn.execute(insert(compliance_state).values(device_id=record.device_id, **values))

    def evaluation_state(
        self, device_id: str
    ) -> tuple[ComplianceRecord | None, dict[tuple[str, str], datetime]]:
        if self.read_ahead is not None:  # read by this unit of work's check-in statement
            ahead = self.read_ahead.take(evaluation_state_key(device_id))
            if ahead is not None:
                return ahead  # type: ignore[return-value]
        record: ComplianceRecord | None = None
        failures: dict[tuple[str, str], datetime] = {}
        for row in self.conn.execute(_EVALUATION_STATE, {"device_id": device_id}):
            if record is None and row.state is not None:
                record = _record(row)
            if row.policy_id is not None:
                failures[(row.policy_id, row.rule_id)] = as_utc(row.first_failed_at)
        return record, failures

    def rule_failures(self, device_id: str) -> dict[tuple[str, str], datetime]:
        rows = self.conn.execute(
            select(
                rule_failures.c.policy_id, rule_failures.c.rule_id, rule_failures.c.first_failed_at
            ).where(rule_failures.c.device_id == device_id)
        )
        return {(r.policy_id, r.rule_id): as_utc(r.first_failed_at) for r in rows}

    def sync_rule_failures(
        self, device_id: str, failing: Collection[tuple[str, str]], *, at: datetime
    ) -> dict[tuple[str, str], datetime]:
        self._forget_read_ahead(device_id)
        wanted = set(failing)
        current = self.rule_failures(device_id)
        gone = [key for key in current if key not in wanted]
        if gone:
            self.conn.execute(
                delete(rule_failures).where(
                    and_(
                        rule_failures.c.device_id == device_id,
                        tuple_(rule_failures.c.policy_id, rule_failures.c.rule_id).in_(gone),
                    )
                )
            )
        new = sorted(key for key in wanted if key not in current)
        if new:
            self._require_device(device_id)
            self.conn.execute(
                insert(rule_failures),
                [
                    {
                        "device_id": device_id,
                        "policy_id": policy_id,
                        "rule_id": rule_id,
                        "first_failed_at": as_utc(at),
                    }
                    for policy_id, rule_id in new
                ],
            )
        result = {key: value for key, value in current.items() if key in wanted}
        result.update({key: as_utc(at) for key in new})
        return result
