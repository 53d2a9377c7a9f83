"""The process's read model for one MDM core: one cache, the cached reads, the audit writer.

:func:`read_model_of` builds it on first use and keeps it in ``core.extras`` (one per core,
shared by every reader of the process). The gateway plugs ``reads`` and ``audit`` under its
evaluator and shares ``cache`` for the verified bearer tokens and resolved users.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from mdm_core.read_model.cache import VersionedCache
from mdm_core.read_model.decision_reads import CachedDecisionReads
from mdm_core.read_model.invalidation import attach_invalidation
from mdm_core.read_model.warm import MIN_CACHE_ENTRIES
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.audit_batch import GroupCommitAuditWriter

__all__ = ["AuditRecorder", "ReadModel", "READ_MODEL_KEY", "read_model_of"]

READ_MODEL_KEY = "read_model"


class AuditRecorder(Protocol):
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
        """Append one audit entry and return once it is durable; raise when it is not."""
        ...


@dataclass(frozen=True, slots=True)
class ReadModel:
    cache: VersionedCache[object]
    reads: CachedDecisionReads
    audit: GroupCommitAuditWriter

    def close(self) -> None:
        self.audit.close()
        self.cache.clear()


def read_model_of(core: MdmCore, *, max_entries: int = MIN_CACHE_ENTRIES) -> ReadModel:
    """The read model of ``core`` (built once per core; ``max_entries`` sizes its cache when
    it is built: :func:`~mdm_core.read_model.warm.cache_entries_for` the devices warmed)."""
    found = core.extras.get(READ_MODEL_KEY)
    if isinstance(found, ReadModel):
        return found
    cache: VersionedCache[object] = VersionedCache(max_entries=max_entries)
    model = ReadModel(
        cache=cache,
        reads=CachedDecisionReads(core.storage, cache),
        audit=GroupCommitAuditWriter(core.storage),
    )
    attach_invalidation(core.bus, cache)  # freshness only: decisions check versions
    core.extras[READ_MODEL_KEY] = model
    return model
