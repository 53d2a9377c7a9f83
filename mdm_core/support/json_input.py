"""The one JSON parser for untrusted input: bounded depth and size, strict encoding (RFC 8259).

Every JSON endpoint (device protocol, posture API, Okta hook, the Entra ``claims`` parameter)
parses request JSON with :func:`loads_bounded`; ``mdm_core`` owns it because the gateway may
import ``mdm_core`` but not the other way round. It refuses, with a :class:`JsonInputError`
(a 400 ``invalid_json`` whose message says what is wrong), instead of raising anything else:

- more than ``max_bytes`` (``too large``);
- bytes that are not UTF-8, and any byte order mark (RFC 8259 §8.1: JSON exchanged between
  systems is UTF-8 without a BOM; :func:`json.loads` would otherwise guess UTF-16/32);
- nesting deeper than ``max_depth`` (the C decoder would otherwise raise ``RecursionError``
  on a few thousand ``[``, which no handler caught: a 500);
- ``NaN``, ``Infinity``, numbers that overflow to infinity, integer literals longer than
  :data:`MAX_INT_DIGITS` digits;
- duplicate object keys (parsers disagree on which one wins: a classic smuggling trick);
- strings (keys or values) with U+0000 or a lone surrogate, which no identifier, report or
  name of ours contains and which databases refuse at insert (a 500 or a false "outage"
  later); ``strict_strings=False`` leaves this to the schema of the fields actually read.

``JsonInputError`` is both an :class:`~mdm_core.domain.errors.BadRequest` (the device protocol's
error handlers answer it) and a :class:`ValueError` (callers that catch ``ValueError`` keep
working).
"""

from __future__ import annotations

import json
import math
from typing import Any

from mdm_core.domain.errors import BadRequest

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MAX_INT_DIGITS",
    "NO_NUL_PATTERN",
    "JsonInputError",
    "loads_bounded",
]

#: Deepest nesting accepted (objects and arrays); our documents nest a handful of levels.
DEFAULT_MAX_DEPTH = 32
#: Longest integer literal accepted (a 128-bit integer has 39 digits).
MAX_INT_DIGITS = 64
#: JSON Schema / pydantic ``pattern`` for a string field without U+0000, for documents parsed
#: with ``strict_strings=False`` (the published schema then says so, and fuzzers respect it).
NO_NUL_PATTERN = "^[^\\x00]*$"


class JsonInputError(BadRequest, ValueError):
    """Input that is not acceptable JSON; ``message`` says why (no input echoed back)."""

    reason = "invalid_json"


def _no_constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonInputError("a number is out of range")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonInputError(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonInputError("an object has a duplicate key")
        out[key] = value
    return out


def _bad_string(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (\ud800 ...)
        return True
    return False


def _check(document: Any, max_depth: int, strict_strings: bool) -> None:
    """Depth and string checks, iteratively (the depth bound is what we are enforcing)."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth >= max_depth:
                raise JsonInputError(f"nesting deeper than {max_depth} levels")
            for key, item in value.items():
                if strict_strings and _bad_string(key):
                    raise JsonInputError("a key contains NUL or an unpaired surrogate")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth >= max_depth:
                raise JsonInputError(f"nesting deeper than {max_depth} levels")
            stack.extend((item, depth + 1) for item in value)
        elif strict_strings and isinstance(value, str) and _bad_string(value):
            raise JsonInputError("a string contains NUL or an unpaired surrogate")


def loads_bounded(
    data: bytes | str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_bytes: int | None = None,
    strict_strings: bool = True,
) -> Any:
    """Parse ``data`` as one JSON value, or raise :class:`JsonInputError` (see module doc).

    ``strict_strings=False`` accepts NUL and lone surrogates inside strings, for documents
    of a third party whose extra members we ignore (the Okta hook): the fields we read then
    refuse NUL through their schema (:data:`NO_NUL_PATTERN`)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise JsonInputError(f"the JSON is larger than {max_bytes} bytes")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise JsonInputError("the JSON is not UTF-8") from None
    else:
        text = data
    if text.startswith("\ufeff"):
        raise JsonInputError("the JSON starts with a byte order mark")
    try:
        document = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_no_constant,
            parse_float=_float,
            parse_int=_int,
        )
    except JsonInputError:
        raise
    except RecursionError:
        raise JsonInputError(f"nesting deeper than {max_depth} levels") from None
    except ValueError:  # JSONDecodeError and int() refusals
        raise JsonInputError("the input is not valid JSON") from None
    _check(document, max_depth, strict_strings)
    return document
