"""The audit trail: who did what to which subject, with what outcome (append-only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

__all__ = ["AuditEntry", "AuditStore"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str  # "device:<id>", "admin:<name>", "system", "anonymous"
    action: str  # e.g. "device.enroll", "device_proof.verify"
    subject: str  # what it is about: a device id, a user id, a serial
    outcome: str  # ok | refused | error | allow | block ...
    detail: dict[str, Any]


class AuditStore(Protocol):
    def record(
        self,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        detail: dict[str, Any],
        *,
        at: datetime | None = None,
    ) -> None:
        """Append one entry (``at`` defaults to now). ``detail`` must be JSON-serialisable
        and never hold secrets. Over-long actor/action/subject/outcome are truncated."""
        ...

    def recent(self, subject: str, limit: int = 50) -> list[AuditEntry]:
        """The newest ``limit`` entries about ``subject``, newest first; ``[]`` if none."""
        ...
