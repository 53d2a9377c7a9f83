"""Convergence planning: the commands that make one device match its desired configuration.

Pure (no I/O): given what configuration policies want on the device
(:func:`mdm_core.policy.configuration.desired_configuration`), what the device last reported
as installed (``managed_apps`` / ``managed_certificates`` of its posture), and the device's
recent commands, :func:`plan_device` says exactly which ``install_*`` / ``remove_*`` commands
to queue and which of convergence's own pending commands to cancel.

The *expected* state of an item is what the device reported, updated by every command whose
effect the report cannot show yet: a pending command (queued, delivered, not_now) and an
acknowledged one answered after the report was received. Then:

- an item the policies install that is not expected installed gets an install command;
- an item that is expected installed, is *managed* (named by some configuration policy, or
  installed by convergence before) and the policies no longer install, gets a remove command
  (an app the MDM never managed is never removed);
- a pending convergence command that now works against the policies is cancelled
  (Marketing -> Finance -> Marketing before the device checked in); a pending command an
  admin queued is left alone and reported as a conflict (no command for that item).

Each command's idempotency key is a hash of (device, command type, item, the item's state
version), the version being the id of the latest command the device had for that item (or
none). It depends only on stored state, never on what triggered the run, so two runs that
race (a membership event and a policy edit at once, or one event delivered to every process
on a shared bus) plan the same key and the queue keeps one command; once that command exists
the next plan sees it (pending, or answered) and a later change gets a new version, so a
Marketing -> Finance -> Marketing round trip installs again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from mdm_core.device.commands import (
    DELIVERABLE_STATUSES,
    Command,
    CommandStatus,
    CommandType,
)
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.configuration import DesiredConfiguration

__all__ = [
    "CONVERGENCE_ACTOR",
    "ItemKind",
    "Item",
    "Action",
    "DevicePlan",
    "desired_version",
    "idempotency_key",
    "managed_items",
    "plan_device",
]

#: ``created_by`` of every command convergence queues (and the actor of its audit records).
CONVERGENCE_ACTOR = "system:convergence"


class ItemKind(StrEnum):
    APP = "app"
    CERTIFICATE = "certificate"


Item = tuple[ItemKind, str]

_COMMAND: dict[tuple[ItemKind, bool], CommandType] = {
    (ItemKind.APP, True): CommandType.INSTALL_APP,
    (ItemKind.APP, False): CommandType.REMOVE_APP,
    (ItemKind.CERTIFICATE, True): CommandType.INSTALL_CERTIFICATE,
    (ItemKind.CERTIFICATE, False): CommandType.REMOVE_CERTIFICATE,
}
_EFFECT = {ctype: (kind, install) for (kind, install), ctype in _COMMAND.items()}


@dataclass(frozen=True, slots=True, order=True)
class Action:
    """One command to queue: install (``True``) or remove an app or certificate.
    ``previous`` is the id of the device's latest command for the item ("" when none)."""

    kind: ItemKind
    item: str
    install: bool
    previous: str = ""

    @property
    def command_type(self) -> CommandType:
        return _COMMAND[(self.kind, self.install)]

    @property
    def payload(self) -> dict[str, Any]:
        return {"app_id": self.item} if self.kind is ItemKind.APP else {"name": self.item}

    def __str__(self) -> str:
        return f"{self.command_type.value} {self.item}"


@dataclass(frozen=True, slots=True)
class DevicePlan:
    device_id: str
    version: str
    actions: tuple[Action, ...] = ()
    cancel: tuple[Command, ...] = ()  # convergence's own pending commands now contradicted
    conflicts: tuple[str, ...] = ()  # "remove_app com.x (command <id> queued by admin:bob)"

    @property
    def empty(self) -> bool:
        return not (self.actions or self.cancel)

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "version": self.version,
            "actions": [str(a) for a in self.actions],
            "cancelled": [c.id for c in self.cancel],
            "conflicts": list(self.conflicts),
        }


def _command_item(command: Command) -> tuple[Item, bool] | None:
    effect = _EFFECT.get(command.type)
    if effect is None:
        return None
    kind, install = effect
    name = command.payload.get("app_id" if kind is ItemKind.APP else "name")
    if not isinstance(name, str):
        return None
    return (kind, name), install


def desired_version(desired: DesiredConfiguration, trigger: str) -> str:
    """A short hash of the trigger and the desired configuration."""
    body = json.dumps({"trigger": trigger, "desired": desired.to_json()}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def idempotency_key(device_id: str, action: Action) -> str:
    """Deterministic per (device, command type, item, the item's state version: the latest
    command for it), at most 128 characters."""
    body = "\x1f".join((device_id, action.command_type.value, action.item, action.previous))
    return "converge:" + hashlib.sha256(body.encode()).hexdigest()[:48]


def managed_items(policies: CompiledPolicySet) -> frozenset[Item]:
    """Every app and certificate some configuration policy installs or removes."""
    items: set[Item] = set()
    for p in policies.configuration:
        items |= {(ItemKind.APP, a) for a in p.install_apps | p.remove_apps}
        items |= {(ItemKind.CERTIFICATE, c) for c in p.install_certificates | p.remove_certificates}
    return frozenset(items)


@dataclass
class _State:
    expected: set[Item] = field(default_factory=set)
    pending: dict[Item, tuple[Command, bool]] = field(default_factory=dict)
    latest: dict[Item, str] = field(default_factory=dict)  # item -> its latest command id
    ours: set[Item] = field(default_factory=set)  # ever installed by convergence


def _state(
    reported: Iterable[Item], reported_at: datetime | None, history: Sequence[Command]
) -> _State:
    state = _State(expected=set(reported))
    for command in sorted(history, key=lambda c: (c.created_at, c.id)):
        found = _command_item(command)
        if found is None:
            continue
        item, install = found
        state.latest[item] = command.id
        if install and command.created_by == CONVERGENCE_ACTOR:
            if command.status is not CommandStatus.CANCELLED:
                state.ours.add(item)
        if command.status in DELIVERABLE_STATUSES:
            state.pending[item] = (command, install)
        elif command.status is CommandStatus.ACKNOWLEDGED and (
            reported_at is None
            or (command.acknowledged_at is not None and command.acknowledged_at > reported_at)
        ):
            _apply(state.expected, item, install)
    return state


def _apply(expected: set[Item], item: Item, install: bool) -> None:
    if install:
        expected.add(item)
    else:
        expected.discard(item)


def plan_device(
    device_id: str,
    desired: DesiredConfiguration,
    *,
    reported: Collection[Item],
    reported_at: datetime | None,
    history: Sequence[Command],
    managed: Collection[Item],
    version: str,
) -> DevicePlan:
    """The plan for one device (see the module docstring)."""
    wanted: set[Item] = {(ItemKind.APP, a) for a in desired.install_apps} | {
        (ItemKind.CERTIFICATE, c) for c in desired.install_certificates
    }
    state = _state(reported, reported_at, history)
    removable = set(managed) | state.ours
    expected = set(state.expected)
    cancel: list[Command] = []
    conflicts: list[str] = []
    blocked: set[Item] = set()
    for item, (command, install) in sorted(state.pending.items()):
        should_install = item in wanted
        if install == should_install or (not install and item not in removable):
            _apply(expected, item, install)  # on its way, and what the policies want
        elif command.created_by == CONVERGENCE_ACTOR:
            cancel.append(command)  # our own stale command: the expected state is the base
        else:
            blocked.add(item)
            conflicts.append(
                f"{command.type.value} {item[1]} (command {command.id} queued by "
                f"{command.created_by})"
            )
    last = state.latest
    actions = [
        Action(k, n, True, last.get((k, n), "")) for k, n in sorted(wanted - expected - blocked)
    ]
    surplus = (expected & removable) - wanted - blocked
    actions += [Action(k, n, False, last.get((k, n), "")) for k, n in sorted(surplus)]
    return DevicePlan(
        device_id=device_id,
        version=version,
        actions=tuple(sorted(actions, key=lambda a: (a.install, a.kind, a.item))),
        cancel=tuple(cancel),
        conflicts=tuple(conflicts),
    )
