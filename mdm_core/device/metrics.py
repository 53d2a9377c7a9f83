"""Prometheus counters of the device protocol: check-ins and command transitions.

- ``posture_device_checkins_total{format, result}``: one per check-in request. ``format`` is
  one of :data:`CHECKIN_FORMATS` (anything else counts as ``other``); ``result`` is ``ok`` or
  the refusal's reason code (an :class:`~mdm_core.domain.errors.MdmError` class attribute, so a
  fixed
  set), never a message.
- ``posture_device_commands_total{type, status}``: one per command state transition recorded
  (``type`` a :class:`~mdm_core.device.commands.CommandType`, ``status`` the state entered).

Labels are bounded by construction: no device id, user id, URL or free text is ever a label
value (a test lists every label value after a full login and check-in). The device proof
counters live beside the verifier in :mod:`mdm_core.device.proof`.
"""

from __future__ import annotations

from prometheus_client import Counter

from mdm_core.posture.normalize import FORMATS

__all__ = ["CHECKINS", "COMMANDS", "CHECKIN_FORMATS", "count_checkin", "count_command"]

#: Report formats the device protocol accepts; the label set of ``format``.
CHECKIN_FORMATS = frozenset(FORMATS)

CHECKINS = Counter(
    "posture_device_checkins",
    "Device check-in requests, by report format and result (ok or the refusal reason).",
    ["format", "result"],
)
COMMANDS = Counter(
    "posture_device_commands",
    "Device command state transitions, by command type and the state entered.",
    ["type", "status"],
)


def count_checkin(fmt: object, result: str) -> None:
    """Count one check-in; ``fmt`` is whatever the device sent (unknown -> ``other``)."""
    label = fmt if isinstance(fmt, str) and fmt in CHECKIN_FORMATS else "other"
    CHECKINS.labels(format=label, result=result).inc()


def count_command(command_type: str, status: str) -> None:
    """Count one command transition (both values come from closed enumerations)."""
    COMMANDS.labels(type=command_type, status=status).inc()
