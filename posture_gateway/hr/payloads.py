"""Parsing webhook bodies: strict JSON, then a pydantic model per format.

:func:`load_json` refuses what a lenient parser would guess at: bytes that are not UTF-8,
duplicate object keys (two parsers could read two different deliveries from one signed body),
``NaN``/``Infinity``, and nesting deep enough to exhaust the stack. The models then check the
shape: BambooHR's field-based payload (``{"employees": [{"id", "action", "timestamp",
"fields", "changedFields"}]}``; unknown keys BambooHR may add are ignored) and our generic
shape (:class:`GenericEvent`, ``extra=forbid``). Every refusal is an :class:`HrError` (400);
no other exception escapes (``tests/unit/posture_gateway/hr/test_payloads_fuzz.py``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from posture_gateway.hr.errors import HrError

__all__ = [
    "load_json",
    "parse_bamboohr",
    "parse_generic",
    "BambooEmployee",
    "BambooPayload",
    "GenericEmployee",
    "GenericEvent",
    "MAX_EMPLOYEES",
]

_M = TypeVar("_M", bound=BaseModel)

#: Employees in one BambooHR delivery (a batch).
MAX_EMPLOYEES = 2000

_Short = Annotated[StrictStr, Field(max_length=1024)]
_FieldValue = _Short | StrictInt | StrictFloat | StrictBool | None


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(f"duplicate key {key[:64]!r}")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json(body: bytes) -> Any:
    """The JSON value of ``body``; :class:`HrError` 400 ``invalid_json`` otherwise."""
    try:
        text = body.decode("utf-8")
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except _Duplicate as exc:
        raise HrError(400, "invalid_json", f"the body has a {exc}") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise HrError(400, "invalid_json", "the body is not valid UTF-8 JSON") from None


class BambooEmployee(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: Annotated[StrictStr, Field(min_length=1, max_length=64)] | StrictInt
    action: Annotated[StrictStr, Field(max_length=32)] | None = None
    timestamp: Annotated[StrictStr, Field(max_length=64)] | None = None
    fields: dict[Annotated[StrictStr, Field(max_length=128)], _FieldValue] = Field(
        default_factory=dict, max_length=500
    )
    changed_fields: list[Annotated[StrictStr, Field(max_length=128)]] = Field(
        default_factory=list, alias="changedFields", max_length=500
    )

    @property
    def employee_id(self) -> str:
        return str(self.id)


class BambooPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    employees: list[BambooEmployee] = Field(min_length=1, max_length=MAX_EMPLOYEES)


class GenericEmployee(BaseModel):
    """Exactly one way to name the user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None
    email: Annotated[StrictStr, Field(min_length=3, max_length=320)] | None = None
    username: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GenericEmployee:
        given = [v for v in (self.user_id, self.email, self.username) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of user_id, email and username")
        return self


class GenericEvent(BaseModel):
    """``POST /hr/v1/webhooks/generic`` (docs/hr-triggers.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    type: Literal["employee.offboard", "employee.offboard_cancelled"]
    employee: GenericEmployee
    effective_at: AwareDatetime | None = None


def _validated(model: type[_M], value: Any) -> _M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise HrError(400, "invalid_request", f"{where}: {first['msg']}") from None


def parse_bamboohr(body: bytes) -> BambooPayload:
    return _validated(BambooPayload, load_json(body))


def parse_generic(body: bytes) -> GenericEvent:
    return _validated(GenericEvent, load_json(body))
