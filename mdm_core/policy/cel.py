"""Custom conditions in CEL (Common Expression Language) over the posture.

Uses the ``common-expression-language`` package (import name ``cel``, a Rust core; see
``docs/decisions.md`` for the measurement against ``cel-python``). An expression is compiled
once; at evaluation it receives only the variables it references, and of ``posture`` only the
fields it names, because converting Python values into CEL dominates the cost.

Variables: ``posture`` (the posture fields; ``null`` when not reported), ``device``
(``platform``, ``ownership``), ``user`` (``id``, ``groups``), ``now`` (timestamp).
A condition must evaluate to a bool; ``true`` means the rule passes. A runtime error (for
instance comparing a ``null`` field) makes the rule fail: not reported never passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import attrgetter
from typing import Any

import cel

from mdm_core.posture.model import POSTURE_FIELDS, Posture

__all__ = [
    "CelCondition",
    "CelCompileError",
    "CelEvaluationError",
    "compile_condition",
    "ROOTS",
    "MEMO_SIZE",
]

ROOTS = frozenset({"posture", "device", "user", "now"})
#: Distinct input combinations remembered per expression before the memo is cleared.
MEMO_SIZE = 4096
_FIELD_REF = re.compile(r"\bposture\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_POSTURE_TOKEN = re.compile(r"\bposture\b")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CelCompileError(ValueError):
    """The expression does not parse, names an unknown variable or field, or is not a bool."""


class CelEvaluationError(RuntimeError):
    """The expression failed at evaluation time (a rule that errs fails)."""


@dataclass(frozen=True, slots=True)
class CelCondition:
    source: str
    program: Any
    posture_fields: tuple[str, ...]
    uses_device: bool
    uses_user: bool
    uses_now: bool
    memo: dict[tuple[object, ...], bool | str] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: reads ``posture_fields`` off a posture in one C call (one field: the bare value)
    _getter: Callable[[Posture], Any] | None = field(
        init=False, default=None, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.posture_fields:
            object.__setattr__(self, "_getter", attrgetter(*self.posture_fields))

    def evaluate(
        self,
        posture: Posture,
        *,
        platform: str,
        ownership: str,
        user_id: str,
        groups: frozenset[str],
        now: datetime,
    ) -> bool:
        """``True`` when the condition holds; raises :class:`CelEvaluationError` otherwise.

        CEL is pure, so results are memoised on exactly the values the expression reads
        (the projected posture fields, and device/user when referenced): fleets share a few
        distinct value combinations, and a hit costs a dict lookup instead of a CEL call.
        Expressions reading ``now`` are not memoised. The memo is bounded (cleared when full).
        """
        getter = self._getter
        if getter is None:
            raw: tuple[Any, ...] = ()
        elif len(self.posture_fields) == 1:
            raw = (getter(posture),)
        else:
            raw = getter(posture)
        key: tuple[object, ...] | None = None
        if not self.uses_now:
            if self.uses_device or self.uses_user:
                key = (
                    raw,
                    platform if self.uses_device else None,
                    ownership if self.uses_device else None,
                    user_id if self.uses_user else None,
                    groups if self.uses_user else None,
                )
            else:
                key = raw  # the fields alone (one key shape per condition)
            try:
                hit = self.memo.get(key)
            except TypeError:  # an unhashable value: evaluate without the memo
                key, hit = None, None
            if hit is not None:
                if isinstance(hit, str):  # a remembered error: raise a fresh exception
                    raise CelEvaluationError(hit)
                return hit
        result: bool | str
        try:
            result = self._run(raw, platform, ownership, user_id, groups, now)
        except CelEvaluationError as exc:
            result = str(exc)
        if key is not None:
            if len(self.memo) >= MEMO_SIZE:
                self.memo.clear()
            self.memo[key] = result
        if isinstance(result, str):
            raise CelEvaluationError(result)
        return result

    def _run(
        self,
        raw: tuple[Any, ...],
        platform: str,
        ownership: str,
        user_id: str,
        groups: frozenset[str],
        now: datetime,
    ) -> bool:
        context: dict[str, Any] = {
            "posture": {f: _cel_value(v) for f, v in zip(self.posture_fields, raw, strict=True)}
        }
        if self.uses_device:
            context["device"] = {"platform": platform, "ownership": ownership}
        if self.uses_user:
            context["user"] = {"id": user_id, "groups": sorted(groups)}
        if self.uses_now:
            context["now"] = now
        try:
            result = self.program.execute(context)
        except Exception as exc:  # the Rust core raises several builtin types
            raise CelEvaluationError(f"{type(exc).__name__}: {_first_line(exc)}") from None
        if not isinstance(result, bool):
            raise CelEvaluationError(f"expression returned {type(result).__name__}, not bool")
        return result


def compile_condition(source: str) -> CelCondition:
    """Compile ``source`` once; raises :class:`CelCompileError` with a readable reason."""
    try:
        program = cel.compile(source)
    except Exception as exc:
        raise CelCompileError(f"CEL does not parse: {_first_line(exc)}") from exc
    fields = sorted(set(_FIELD_REF.findall(source)))
    unknown = [f for f in fields if f not in POSTURE_FIELDS]
    if unknown:
        raise CelCompileError(
            f"CEL names unknown posture field(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(POSTURE_FIELDS))})"
        )
    if len(_POSTURE_TOKEN.findall(source)) > len(_FIELD_REF.findall(source)):
        # `posture` used whole (e.g. posture["x"]): hand it every field
        fields = sorted(POSTURE_FIELDS)
    roots = set(program.variables())
    condition = CelCondition(
        source=source,
        program=program,
        posture_fields=tuple(fields),
        uses_device="device" in roots,
        uses_user="user" in roots,
        uses_now="now" in roots,
    )
    _check_on_sample(condition)
    return condition


def _check_on_sample(condition: CelCondition) -> None:
    """Evaluate once on a fully reported sample posture: catches unknown variables, type
    errors and non-bool results when the file is checked, not at a user's login."""
    sample = Posture.model_validate(_SAMPLE_POSTURE)
    try:
        condition.evaluate(
            sample,
            platform="ios",
            ownership="corporate",
            user_id="sample-user",
            groups=frozenset({"sample-group"}),
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )
    except CelEvaluationError as exc:
        raise CelCompileError(f"CEL fails on a fully reported sample posture: {exc}") from exc


def _cel_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, tuple):
        return [_cel_value(item) for item in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="python")
    return str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_SAMPLE_POSTURE: dict[str, Any] = {
    "platform": "ios",
    "collected_at": "2026-01-01T00:00:00Z",
    "os_version": "17.4",
    "os_build": "21E219",
    "security_patch_level": "2025-12-01",
    "storage_encrypted": True,
    "passcode_set": True,
    "passcode_min_length": 6,
    "jailbroken": False,
    "screen_lock_enabled": True,
    "screen_lock_timeout_s": 300,
    "firewall_enabled": True,
    "secure_boot": True,
    "agent_present": True,
    "mdm_profile_present": True,
    "work_profile_present": True,
    "agent_version": "1.0.0",
    "model": "sample",
    "serial_number": "SAMPLE",
    "hostname": "sample",
    "managed_apps": [{"app_id": "com.example.app", "version": "1.0"}],
    "installed_apps": [{"app_id": "com.example.app", "version": "1.0"}],
    "location": {"latitude": 0.0, "longitude": 0.0},
}
