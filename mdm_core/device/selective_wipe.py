"""What a selective wipe names: only what the MDM put on the device.

:func:`selective_wipe_payload` builds the payload of a ``selective_wipe`` command for one
device from three sources, and from nothing else:

- the device's latest posture, as reported: ``managed_apps`` and ``managed_certificates``
  (the MDM-managed lists; ``installed_apps``, the personal inventory, is never read);
- the configuration policies in force for the device (its user's groups, platform and
  ownership): the apps and certificates they install;
- the commands the MDM queued for the device that put something on it: ``install_app``
  (``app_id``), ``install_certificate`` (``name``), ``apply_configuration``
  (``configuration_id``), unless cancelled before they were delivered (an app installed
  while the device has not reported since is named too).

The work container (work profile, the managed-data area) is always named. A name that is not
a valid managed name (:data:`mdm_core.device.command_model.MANAGED_NAME_PATTERN`: no
whitespace, no path separator) is left out and logged, never passed on; the result is
validated by :class:`~mdm_core.device.command_model.SelectiveWipePayload`, which has no field
for anything but these lists, so a selective wipe can never carry a path or a personal app
the MDM does not manage.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from typing import Any

from mdm_core.device.command_model import (
    MANAGED_NAME_PATTERN,
    MAX_WIPE_APPS,
    MAX_WIPE_CERTIFICATES,
    MAX_WIPE_CONFIGURATIONS,
    CommandStatus,
    CommandType,
    NoSuchDevice,
    validate_payload,
)
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.configuration import desired_configuration
from mdm_core.storage.uow import UnitOfWork

__all__ = ["selective_wipe_payload"]

log = logging.getLogger(__name__)

_NAME = re.compile(MANAGED_NAME_PATTERN)
#: How many commands of each installing type are read back (newest first).
_COMMANDS_READ = 5000


def _names(values: Collection[object], what: str, device_id: str, cap: int) -> list[str]:
    """The valid names among ``values``, distinct and sorted, at most ``cap``."""
    valid = {v for v in values if isinstance(v, str) and _NAME.fullmatch(v)}
    dropped = len({v for v in values if isinstance(v, str)}) - len(valid)
    if dropped:
        log.warning(
            "selective wipe of %s: %d %s name(s) left out (not valid)", device_id, dropped, what
        )
    names = sorted(valid)
    if len(names) > cap:
        log.warning("selective wipe of %s: %d %s, only %d named", device_id, len(names), what, cap)
    return names[:cap]


#: The commands by which the MDM put data on a device, and the payload key naming it.
_INSTALLED_BY: dict[CommandType, str] = {
    CommandType.INSTALL_APP: "app_id",
    CommandType.INSTALL_CERTIFICATE: "name",
    CommandType.APPLY_CONFIGURATION: "configuration_id",
}


def _queued(uow: UnitOfWork, device_id: str) -> dict[CommandType, set[object]]:
    """Per install type, what the device's install commands named (one statement), but those
    cancelled before they were ever delivered (they never reached it)."""
    named: dict[CommandType, set[object]] = {kind: set() for kind in _INSTALLED_BY}
    for c in uow.commands.of_types(device_id, _INSTALLED_BY, limit=_COMMANDS_READ):
        if not (c.status is CommandStatus.CANCELLED and c.delivered_at is None):
            named[c.type].add(c.payload.get(_INSTALLED_BY[c.type]))
    return named


def selective_wipe_payload(
    uow: UnitOfWork,
    device_id: str,
    *,
    reason: str | None,
    policies: CompiledPolicySet | None = None,
) -> dict[str, Any]:
    """The ``selective_wipe`` payload for ``device_id`` (see the module docstring), read in
    the caller's unit of work: ``{"reason", "work_container": true, "apps", "certificates",
    "configurations"}``, each list sorted. With ``policies`` (the set in force), the apps and
    certificates its configuration policies install on this device are named too. Unknown
    device: :class:`NoSuchDevice`."""
    device = uow.devices.get(device_id)
    if device is None:
        raise NoSuchDevice(f"unknown device {device_id!r}")
    apps: set[object] = set()
    certificates: set[object] = set()
    latest = uow.posture.latest(device_id)
    if latest is not None:
        apps.update(a.app_id for a in latest.posture.managed_apps)
        certificates.update(c.name for c in latest.posture.managed_certificates)
    if policies is not None:
        desired = desired_configuration(
            policies,
            groups=uow.memberships.effective_group_names(device.user_id),
            platform=device.platform,
            ownership=device.ownership,
        )
        apps |= desired.install_apps
        certificates |= desired.install_certificates
    queued = _queued(uow, device_id)
    apps |= queued[CommandType.INSTALL_APP]
    certificates |= queued[CommandType.INSTALL_CERTIFICATE]
    configurations = queued[CommandType.APPLY_CONFIGURATION]
    payload = {
        "reason": None if reason is None else reason[:256],
        "work_container": True,
        "apps": _names(apps, "app", device_id, MAX_WIPE_APPS),
        "certificates": _names(certificates, "certificate", device_id, MAX_WIPE_CERTIFICATES),
        "configurations": _names(
            configurations, "configuration", device_id, MAX_WIPE_CONFIGURATIONS
        ),
    }
    return validate_payload(CommandType.SELECTIVE_WIPE.value, payload)
