"""The in-process read model of the decision hot path: what a decision reads, cached per
process and version-checked per decision.

A decision reads the device (record, status), its stored posture and rule state, the user and
their effective groups, and (in the gateway) a verified bearer token. Each is cached here under
an *entity key* (``device:<id>``, ``directory``, ``tokens``) with the version it was read at.
Database triggers (:mod:`mdm_core.storage.sql.version_triggers`) bump the entity's row in
``read_model_versions`` in the transaction of every write, so a decision reads its keys'
versions in ONE statement and refetches only what changed. Correctness does not depend on
event delivery: a check-in that degrades a device commits the new version before its response
returns, and every process's next decision sees it (embedded SQLite shared by several workers
too). Domain events from the bus only drop entries early (:mod:`.invalidation`); a lost bus
connection drops the whole cache.

- :mod:`.versions`: entity keys and the one-statement version read.
- :mod:`.cache`: the bounded, thread-safe versioned cache.
- :mod:`.decision_reads`: the decision's reads (store-backed and cached) behind one small
  protocol, :class:`DecisionReads`.
- :mod:`.warm`: the bulk reads that fill the cache at worker start (versions first).
- :mod:`.invalidation`: bus events -> early drops; gap or reconnect -> resync (clear).
- :mod:`.wiring`: one read model per core (cache, cached reads, group-commit audit writer).
"""

from __future__ import annotations

from mdm_core.read_model.cache import VersionedCache
from mdm_core.read_model.decision_reads import (
    CachedDecisionReads,
    DecisionReads,
    DecisionState,
    StoreDecisionReads,
)
from mdm_core.read_model.versions import (
    DIRECTORY,
    TOKENS,
    SqlVersionStore,
    VersionStore,
    device_key,
)

__all__ = [
    "CachedDecisionReads",
    "DecisionReads",
    "DecisionState",
    "DIRECTORY",
    "StoreDecisionReads",
    "SqlVersionStore",
    "TOKENS",
    "VersionStore",
    "VersionedCache",
    "device_key",
]
