"""Builds the one :class:`~mdm_core.access.evaluator.AccessEvaluator` of a running core.

:func:`evaluator_for` composes the evaluator from the core's parts, each behind its narrow
protocol: the SQL access state (or a read model passed as ``state``), the device proof
verifier, the CA, the check-in's snapshot reading, the policy repository and the SQL audit.
:class:`CheckinSnapshots` is the :class:`~mdm_core.access.evaluator.SnapshotReader` on the
check-in service and the privacy profiles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mdm_core.access.audit import DecisionAudit, SqlDecisionAudit
from mdm_core.access.evaluator import AccessEvaluator, DecisionObserver, LoginProofs
from mdm_core.access.state import AccessStateReader, SqlAccessState
from mdm_core.device.checkin import CheckinService, report_envelope
from mdm_core.domain.model import DeviceRecord
from mdm_core.domain.privacy import PrivacyProfiles
from mdm_core.policy.decision_cache import DecisionCache
from mdm_core.policy.engine import evaluate
from mdm_core.posture.model import Posture
from mdm_core.runtime import MdmCore

__all__ = ["CheckinSnapshots", "evaluator_for"]


class CheckinSnapshots:
    """Reads a login snapshot exactly as a check-in body (format, normalisation, profile)."""

    def __init__(self, checkin: CheckinService, privacy: PrivacyProfiles) -> None:
        if checkin is None or privacy is None:
            raise ValueError("CheckinSnapshots needs the check-in service and privacy profiles")
        self._checkin = checkin
        self._privacy = privacy

    def read(self, device: DeviceRecord, snapshot: Mapping[str, Any], now: datetime) -> Posture:
        fmt, report = report_envelope(snapshot)
        return self._checkin.posture_of(device, report, fmt, now)

    def restrict(self, device: DeviceRecord, posture: Posture) -> Posture:
        return self._privacy.for_ownership(device.ownership).apply(posture)


def evaluator_for(
    core: MdmCore,
    *,
    state: AccessStateReader | None = None,
    audit: DecisionAudit | None = None,
    observers: Sequence[DecisionObserver] = (),
    cache: DecisionCache | None = None,
    proofs: LoginProofs | None = None,
) -> AccessEvaluator:
    """The evaluator of ``core``; ``state`` replaces the SQL access state and ``audit`` the
    one-transaction-per-record audit (the read model and its group-commit writer); ``cache``
    puts a decision cache in front of the policy engine (a hit needs every input equal, so
    it can only be stale by freeing memory late, never by answering wrong); ``proofs``
    replaces the core's verifier for login proofs (the read model's cached identities)."""
    return AccessEvaluator(
        state=state or SqlAccessState(core.storage),
        proofs=proofs or core.proofs,
        certificates=core.ca,
        snapshots=CheckinSnapshots(core.checkin, core.privacy),
        policies=core.policies,
        audit=audit or SqlDecisionAudit(core.storage),
        observers=observers,
        engine=cache.evaluate if cache is not None else evaluate,
    )
