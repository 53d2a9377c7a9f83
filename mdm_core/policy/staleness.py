"""The stale-posture sweep: a device that stops checking in is blocked and loses its access.

Zero tolerance: stale posture is failed posture. A device that goes silent never sends the
check-in that would block it, so without this sweep it would keep its sessions and tokens
until its next login or refresh is decided. :class:`StaleSweep` runs every ``interval``
(default 30 s) in every served worker; a *lease row* (``leases``, name
:data:`LEASE_NAME`, :class:`mdm_core.storage.sync_state.LeaseStore`) lets one of them work at
a time, as the LDAP schedule does.

One sweep:

1. the cutoff is ``now - the smallest enforced max_posture_age`` of the policy set in force: a
   device received more recently than that is fresh for every policy, so it is never read;
2. one page (``batch``, default 500) of candidates, oldest report first, from an index-backed
   range query (:class:`mdm_core.storage.staleness.StalePostureStore`): status ``active`` or
   ``pending_verification``, recorded verdict not already ``block``. The next sweep continues
   after the last candidate of a full page (a device that is stale for the global minimum but
   fresh for its own, longer, policy cannot starve the rest), and starts again at the oldest
   after a short page;
3. per candidate, ONE unit of work: the posture row is locked (a concurrent check-in waits, or
   has already committed and is seen), the device is evaluated exactly as the compliance hook
   does it (:func:`mdm_core.access.evaluate.evaluate_state` on the stored posture and its age
   by the server's clock, owner's effective groups), and only when the engine blocks it with
   reason ``posture_stale`` (enforced policies: report-only staleness blocks nothing) and the
   recorded verdict is not already ``block``: the verdict is recorded (``noncompliant``,
   ``block``, the engine's reasons), ``compliance.changed`` (``cause: posture_stale``) is
   written to the outbox and :func:`mdm_core.domain.device_lifecycle.end_device_access`
   (reason ``posture_stale``) revokes its sessions, refresh and access tokens, audited, with
   ``access.revoked``. Any error rolls the whole unit back (nothing half-done) and stops the
   sweep; the next tick retries.

A missing or invalid policy set skips the sweep (logged): every decision already blocks then.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mdm_core.access.evaluate import evaluate_state, stored_posture
from mdm_core.access.state import AccessState
from mdm_core.directory.mirror import effective_group_names
from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.compliance_hook import compliance_state_of, record_verdict
from mdm_core.policy.errors import PolicySetUnavailable
from mdm_core.policy.model import Outcome, ReasonCode, UserContext
from mdm_core.storage.compliance import ComplianceRecord
from mdm_core.storage.staleness import StaleCandidate
from mdm_core.storage.uow import Storage, UnitOfWork

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_INTERVAL",
    "LEASE_NAME",
    "STALE_REASON",
    "StaleSweep",
    "SweepResult",
    "stale_cutoff_age",
]

log = logging.getLogger(__name__)

LEASE_NAME = "stale-posture-sweep"
#: The revocation reason and the ``compliance.changed`` cause the sweep writes.
STALE_REASON = ReasonCode.POSTURE_STALE.value
DEFAULT_INTERVAL = timedelta(seconds=30)
DEFAULT_BATCH = 500

_SWEPT = frozenset({DeviceStatus.ACTIVE, DeviceStatus.PENDING_VERIFICATION})


def stale_cutoff_age(policies: CompiledPolicySet) -> timedelta | None:
    """The smallest ``max_posture_age`` of the enforced compliance policies (``None``: no
    enforced policy, nothing can be blocked for staleness)."""
    ages = [p.max_posture_age for p in policies.compliance if p.enforce]
    return min(ages) if ages else None


@dataclass(slots=True)
class SweepResult:
    """What one sweep did: devices read, blocked (and revoked), credentials ended."""

    examined: int = 0
    blocked: list[str] = field(default_factory=list)
    credentials_revoked: int = 0
    skipped: str | None = None  # why nothing was read (no policy set, no enforced policy)


class StaleSweep:
    """Blocks and revokes silent devices (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        policies: Callable[[], CompiledPolicySet],
        *,
        interval: timedelta = DEFAULT_INTERVAL,
        batch: int = DEFAULT_BATCH,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        holder: str | None = None,
    ) -> None:
        if storage is None:
            raise ValueError("StaleSweep needs a storage")
        if interval <= timedelta(0):
            raise ValueError("the stale sweep interval must be positive")
        if batch < 1:
            raise ValueError("the stale sweep batch must be at least 1")
        self.storage = storage
        self.policies = policies
        self.interval = interval
        self.batch = batch
        self.clock = clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Long enough to cover a slow sweep and a missed tick; renewed at every tick.
        self.lease_ttl = max(interval * 4, timedelta(minutes=2))
        self._after: StaleCandidate | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_result: SweepResult | None = None

    # --- one tick ---------------------------------------------------------------------------

    def holds_lease(self) -> bool:
        with self.storage.unit_of_work() as uow:
            return uow.leases.acquire(LEASE_NAME, self.holder, now=self.clock(), ttl=self.lease_ttl)

    def run_once(self) -> SweepResult | None:
        """One tick: ``None`` when another process holds the lease, else :meth:`sweep`."""
        if not self.holds_lease():
            return None
        result = self.sweep()
        self.last_result = result
        return result

    def sweep(self) -> SweepResult:
        """One page of candidates (does not take the lease: :meth:`run_once` does). Raises
        on a storage error, after rolling back the device being handled."""
        now = self.clock()
        try:
            policies = self.policies()
        except PolicySetUnavailable:
            log.error("stale sweep skipped: no valid policy set (every decision blocks)")
            return SweepResult(skipped="no_policy_set")
        max_age = stale_cutoff_age(policies)
        if max_age is None:
            return SweepResult(skipped="no_enforced_policy")
        with self.storage.unit_of_work() as uow:
            page = uow.stale_postures.candidates(now - max_age, after=self._after, limit=self.batch)
        result = SweepResult(examined=len(page))
        for candidate in page:
            with self.storage.unit_of_work() as uow:
                revoked = self._block_if_stale(uow, candidate.device_id, policies, now)
            if revoked is not None:
                result.blocked.append(candidate.device_id)
                result.credentials_revoked += revoked
        # Continue after a full page next time; start again at the oldest after a short one.
        self._after = page[-1] if len(page) >= self.batch else None
        if result.blocked:
            log.warning(
                "stale sweep: blocked %d silent devices, %d credentials revoked",
                len(result.blocked),
                result.credentials_revoked,
            )
        return result

    def _block_if_stale(
        self, uow: UnitOfWork, device_id: str, policies: CompiledPolicySet, now: datetime
    ) -> int | None:
        """Block and revoke ``device_id`` if the engine blocks it for staleness now; the
        number of live credentials ended, or ``None`` when it was left alone."""
        if uow.stale_postures.lock(device_id) is None:
            return None
        device = uow.devices.get(device_id)
        if device is None or device.status not in _SWEPT:
            return None
        before, failures = uow.compliance.evaluation_state(device_id)
        if before is not None and before.outcome == Outcome.BLOCK.value:
            return None  # already blocked: its access ended then (no duplicate events)
        owner = UserContext(
            id=device.user_id, groups=effective_group_names(uow, device.user_id), active=True
        )
        # As the compliance hook: the posture itself is evaluated, not the device's status.
        state = AccessState(
            user=owner,
            device=dataclasses.replace(device, status=DeviceStatus.ACTIVE),
            stored=uow.posture.latest(device_id),
            rule_failures=failures,
        )
        decision = evaluate_state(
            state, stored_posture(state, now), app=None, now=now, policies=policies
        )
        if decision.outcome is not Outcome.BLOCK or not any(
            r.code is ReasonCode.POSTURE_STALE for r in decision.reasons
        ):
            return None
        if decision.failing_rules != failures.keys():
            uow.compliance.sync_rule_failures(device_id, decision.failing_rules, at=now)
        record = ComplianceRecord(
            device_id=device_id,
            state=compliance_state_of(decision, device.status),
            outcome=Outcome.BLOCK.value,
            reasons=[r.to_json() for r in decision.reasons],
            policy_ids=list(decision.policy_ids),
            evaluated_at=now,
        )
        return record_verdict(
            uow,
            device,
            before,
            record,
            device.status,
            decision,
            policies,
            now,
            revoke_reason=STALE_REASON,
            cause=STALE_REASON,
        )

    # --- the background loop ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="stale-sweep", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the sweep must survive a bad tick (database down, ...)
                log.exception("stale posture sweep tick failed")
            self._stop.wait(self.interval.total_seconds())

    def stop(self) -> None:
        """Stop the loop (waits for a tick in progress) and release the lease (once: a
        second call, e.g. at interpreter exit after an explicit stop, does nothing)."""
        if self._thread is None and self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        try:
            with self.storage.unit_of_work() as uow:
                uow.leases.release(LEASE_NAME, self.holder)
        except Exception:  # shutting down: the lease expires by itself
            log.exception("could not release the stale sweep lease")
