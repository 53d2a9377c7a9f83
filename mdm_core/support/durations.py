"""One duration syntax for configuration, policies and the CLI: ``30s``, ``2m``, ``1h``, ``7d``.

The spelling is the policy files' (:mod:`mdm_core.policy.durations`), plus ``ms`` for the
few sub-second budgets (``2500ms``); a bare number is seconds (environment variables).
:class:`DurationsModel` is the pydantic base of every settings section (the gateway's, the
connectors'): any field annotated
``timedelta`` (or ``timedelta | None``) accepts that syntax, so a new field gets it for free.
ISO 8601 (``PT10M``) is refused with the fix, so every document shows one syntax.
"""

from __future__ import annotations

import re
import types
import typing
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationInfo, field_validator

from mdm_core.policy.durations import format_duration, parse_duration

__all__ = ["DurationsModel", "parse_config_duration", "format_duration", "DURATION_HELP"]

DURATION_HELP = "a number and a unit: 30s, 2m, 1h, 7d (or 2500ms)"
_MILLIS = re.compile(r"^([0-9]{1,9})ms$")
_NUMBER = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,6})?$")


def parse_config_duration(text: str, *, bare_seconds: bool = True) -> timedelta:
    """``"90s"`` / ``"2500ms"`` / ``"120"`` -> timedelta; ``ValueError`` naming the syntax.

    ``bare_seconds=False`` (the CLI) refuses a number without a unit: ``--ttl 1`` is more
    likely a mistake than one second."""
    value = text.strip()
    millis = _MILLIS.match(value)
    if millis is not None:
        return timedelta(milliseconds=int(millis.group(1)))
    if bare_seconds and _NUMBER.match(value):
        return timedelta(seconds=float(value))
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use {DURATION_HELP})") from None


def _is_duration(annotation: Any) -> bool:
    if annotation is timedelta:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return timedelta in typing.get_args(annotation)
    return False


class DurationsModel(BaseModel):
    """A settings model whose ``timedelta`` fields read ``30s``/``2m``/``1h``/``7d``."""

    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str) or info.field_name is None:
            return value
        field = cls.model_fields.get(info.field_name)
        if field is None or not _is_duration(field.annotation):
            return value
        return parse_config_duration(value)
