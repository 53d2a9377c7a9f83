"""Device convergence: membership changes and policy edits queue the commands that make each
device match its configuration policies, with no human step.

Triggers:

- ``directory.user_groups_changed`` (written by every directory write path in the unit of
  work of the change, :mod:`mdm_core.directory.mirror`): the user's devices are converged
  under the groups the mirror holds *now* (a late re-delivery never applies stale groups),
  the event's id recorded as the trigger in the audit;
- a configuration policy edit (the policy repository swapping in a new set,
  :meth:`PolicyRepository.on_change`): every directory user's devices are converged, the
  policy set's fingerprint as the trigger; ``posture policy converge`` runs the same by hand
  (a dry run shows the plans).

The bus handler only queues work for one worker thread (the in-process bus delivers inside the
outbox relay's transaction; the Redis bus on its reader thread), which converges one user per
unit of work: the planned commands (:mod:`mdm_core.device.convergence_plan`), the
cancellation of its own contradicted commands, and one ``device.converge`` audit record per
device that got any, commit together. Every process subscribed on a shared Redis bus plans
the same idempotency keys for the same event, so the queue holds each command once.

Retired and wiped devices get nothing; with no valid policy set nothing is planned at all
(fail closed: an empty desired set must never strip every device).

Access caches: the same ``directory.user_groups_changed`` event is what a compliance/access
cache invalidates on (there is none on main yet); the access decision itself reads groups
from the mirror at every login, so it changes at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.device.commands import CommandService, IllegalTransition, NoSuchDevice
from mdm_core.device.convergence_plan import (
    CONVERGENCE_ACTOR,
    DevicePlan,
    Item,
    ItemKind,
    desired_version,
    idempotency_key,
    managed_items,
    plan_device,
)
from mdm_core.directory.mirror import effective_group_names
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.configuration import desired_configuration
from mdm_core.policy.errors import PolicySetUnavailable
from mdm_core.storage.uow import Storage, UnitOfWork

__all__ = [
    "ConvergenceService",
    "ConvergenceReport",
    "DeviceOutcome",
    "INACTIVE",
    "CONVERGENCE_KEY",
]

log = logging.getLogger(__name__)

#: Statuses that get no convergence commands.
INACTIVE = frozenset({DeviceStatus.RETIRED, DeviceStatus.WIPED})

#: ``MdmCore.extras`` key (kept for callers that look it up generically).
CONVERGENCE_KEY = "convergence"

_HISTORY = 500  # recent commands per device that the plan reads


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    device_id: str
    user_id: str
    groups: tuple[str, ...]
    plan: DevicePlan | None  # None: skipped
    queued: tuple[str, ...] = ()  # ids of the commands queued now
    skipped: str | None = None  # device_inactive | no_policy_set

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "user_id": self.user_id,
            "groups": list(self.groups),
            "plan": None if self.plan is None else self.plan.to_json(),
            "queued": list(self.queued),
            "skipped": self.skipped,
        }


@dataclass
class ConvergenceReport:
    trigger: str
    devices: list[DeviceOutcome] = field(default_factory=list)

    @property
    def queued(self) -> int:
        return sum(len(d.queued) for d in self.devices)

    @property
    def cancelled(self) -> int:
        return sum(len(d.plan.cancel) for d in self.devices if d.plan is not None)


class ConvergenceService:
    """Plans and queues convergence commands; optionally from a background worker."""

    def __init__(
        self,
        storage: Storage,
        commands: CommandService,
        policies: Callable[[], CompiledPolicySet],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if storage is None or commands is None or policies is None:
            raise ValueError("ConvergenceService needs a storage, a command service and policies")
        self.storage = storage
        self.commands = commands
        self.policies = policies
        self.clock = clock
        self._queue: queue.Queue[tuple[str, str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    # --- synchronous API --------------------------------------------------------------------

    def converge_user(
        self, user_id: str, *, trigger: str, dry_run: bool = False
    ) -> ConvergenceReport:
        """Converge every device of ``user_id`` in one unit of work (``[]`` devices: none)."""
        report = ConvergenceReport(trigger)
        policies = self._policies()
        with self.storage.unit_of_work() as uow:
            groups = effective_group_names(uow, user_id)
            for device in uow.devices.list_for_user(user_id):
                report.devices.append(
                    self._device(uow, device, groups, policies, trigger, dry_run=dry_run)
                )
        return report

    def converge_device(
        self, device_id: str, *, trigger: str, dry_run: bool = False
    ) -> DeviceOutcome:
        """Converge one device; unknown id: :class:`NoSuchDevice`."""
        policies = self._policies()
        with self.storage.unit_of_work() as uow:
            device = uow.devices.get(device_id)
            if device is None:
                raise NoSuchDevice(f"unknown device {device_id!r}")
            groups = effective_group_names(uow, device.user_id)
            return self._device(uow, device, groups, policies, trigger, dry_run=dry_run)

    def converge_all(
        self, *, trigger: str | None = None, dry_run: bool = False
    ) -> ConvergenceReport:
        """Converge the devices of every directory user (a policy edit); the trigger defaults
        to the policy set's fingerprint."""
        policies = self._policies()
        label = trigger or (f"policy:{policies.fingerprint}" if policies else "policy:none")
        report = ConvergenceReport(label)
        with self.storage.unit_of_work() as uow:
            users = [u.id for u in uow.directory_users.list()]
        for user_id in users:
            report.devices.extend(
                self.converge_user(user_id, trigger=label, dry_run=dry_run).devices
            )
        return report

    def _policies(self) -> CompiledPolicySet | None:
        try:
            return self.policies()
        except PolicySetUnavailable:
            log.error("no valid policy set: device convergence plans nothing")
            return None

    def _device(
        self,
        uow: UnitOfWork,
        device: DeviceRecord,
        groups: frozenset[str],
        policies: CompiledPolicySet | None,
        trigger: str,
        *,
        dry_run: bool,
    ) -> DeviceOutcome:
        shown = tuple(sorted(groups))
        if device.status in INACTIVE:
            return DeviceOutcome(device.id, device.user_id, shown, None, skipped="device_inactive")
        if policies is None:
            return DeviceOutcome(device.id, device.user_id, shown, None, skipped="no_policy_set")
        desired = desired_configuration(
            policies, groups=groups, platform=device.platform, ownership=device.ownership
        )
        latest = uow.posture.latest(device.id)
        reported: set[Item] = set()
        if latest is not None:
            reported |= {(ItemKind.APP, a.app_id) for a in latest.posture.managed_apps}
            reported |= {
                (ItemKind.CERTIFICATE, c.name) for c in latest.posture.managed_certificates
            }
        version = desired_version(desired, trigger)
        plan = plan_device(
            device.id,
            desired,
            reported=reported,
            reported_at=None if latest is None else latest.received_at,
            history=uow.commands.for_device(device.id, limit=_HISTORY),
            managed=managed_items(policies),
            version=version,
        )
        if dry_run or plan.empty:
            return DeviceOutcome(device.id, device.user_id, shown, plan)
        at = self.clock()
        for stale in plan.cancel:
            try:
                self.commands.cancel(
                    stale.id, by=CONVERGENCE_ACTOR, reason="superseded", now=at, uow=uow
                )
            except IllegalTransition:  # answered or cancelled meanwhile (a racing run)
                continue
        queued = [
            self.commands.enqueue(
                device.id,
                action.command_type.value,
                action.payload,
                created_by=CONVERGENCE_ACTOR,
                idempotency_key=idempotency_key(device.id, action),
                now=at,
                uow=uow,
            ).id
            for action in plan.actions
        ]
        uow.audit.record(
            CONVERGENCE_ACTOR,
            "device.converge",
            device.id,
            "ok",
            {"trigger": trigger, "groups": list(shown), **plan.to_json()},
            at=at,
        )
        return DeviceOutcome(device.id, device.user_id, shown, plan, queued=tuple(queued))

    # --- triggers ---------------------------------------------------------------------------

    def on_user_groups_changed(self, event: DomainEvent) -> None:
        """Bus handler for ``directory.user_groups_changed``: queue the user's convergence."""
        if event.type != EventType.USER_GROUPS_CHANGED:
            return
        user_id = event.payload.get("user_id") or event.subject
        if not isinstance(user_id, str) or not user_id:
            log.warning("user_groups_changed event %s without a user id; ignored", event.id)
            return
        self._submit(("user", user_id, f"event:{event.id}"))

    def on_policy_change(self, policies: CompiledPolicySet) -> None:
        """Policy repository listener: converge every device under the new set."""
        self._submit(("all", "", f"policy:{policies.fingerprint}"))

    def _submit(self, task: tuple[str, str, str]) -> None:
        if self._thread is None:
            self._run(task)  # no worker (tests, CLI): converge now
        else:
            self._queue.put(task)

    def _run(self, task: tuple[str, str, str]) -> None:
        kind, subject, trigger = task
        try:
            if kind == "user":
                report = self.converge_user(subject, trigger=trigger)
            else:
                report = self.converge_all(trigger=trigger)
            if report.queued or report.cancelled:
                log.info(
                    "convergence (%s): %d command(s) queued, %d cancelled on %d device(s)",
                    trigger,
                    report.queued,
                    report.cancelled,
                    len(report.devices),
                )
        except Exception:  # one failing user must not stop the worker; the next trigger retries
            log.exception("convergence for %s %s failed", kind, subject or "(all)")

    # --- worker -----------------------------------------------------------------------------

    def start(self) -> None:
        """Run triggers on a background thread (the server); without it they run inline."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._work, name="convergence", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the queued triggers (up to ``timeout``), then stop the worker."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        self._thread = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued trigger has run; ``False`` on timeout."""
        done = threading.Event()
        if self._thread is None:
            return True

        def _join() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=_join, daemon=True).start()
        return done.wait(timeout)

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            try:
                if task is None:
                    return
                self._run(task)
            finally:
                self._queue.task_done()
