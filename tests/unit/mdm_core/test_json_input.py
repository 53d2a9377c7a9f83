"""Properties of the one JSON parser for untrusted input (``mdm_core.support.json_input``).

For ANY bytes it returns a value or raises ``JsonInputError`` — never ``RecursionError``,
``UnicodeDecodeError`` or anything else; what it accepts is what the standard parser reads,
within the depth bound; hostile encodings, non-finite numbers, duplicate keys, NUL and lone
surrogates are refused.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm_core.domain.errors import BadRequest
from mdm_core.support.json_input import (
    DEFAULT_MAX_DEPTH,
    MAX_INT_DIGITS,
    JsonInputError,
    loads_bounded,
)

_SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _SAFE_TEXT
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_SAFE_TEXT, inner, max_size=4),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_raise_json_input_error(data: bytes) -> None:
    try:
        loads_bounded(data)
    except JsonInputError as exc:
        assert isinstance(exc, BadRequest) and isinstance(exc, ValueError)
        assert exc.reason == "invalid_json" and exc.status == 400


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}":,0123456789.eE-+ natrufls\\u\x00', max_size=400))
def test_json_like_text_parses_or_raises_json_input_error(text: str) -> None:
    try:
        loads_bounded(text)
    except JsonInputError:
        pass


@settings(max_examples=300, deadline=None)
@given(_DOCUMENTS)
def test_valid_documents_within_the_bound_round_trip(document: Any) -> None:
    encoded = json.dumps(document).encode()
    if _depth(document) <= DEFAULT_MAX_DEPTH:
        assert loads_bounded(encoded) == json.loads(encoded)
    else:
        with pytest.raises(JsonInputError):
            loads_bounded(encoded)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", '{"a":']))
def test_any_nesting_depth_is_answered(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = opener * depth + ("1" if opener != "[" else "") + closer * depth
    if depth <= DEFAULT_MAX_DEPTH:
        assert _depth(loads_bounded(text)) == depth
    else:
        with pytest.raises(JsonInputError, match="nesting"):
            loads_bounded(text)


@settings(max_examples=100, deadline=None)
@given(_DOCUMENTS.filter(lambda d: _depth(d) <= DEFAULT_MAX_DEPTH))
def test_other_encodings_and_boms_are_refused(document: Any) -> None:
    text = json.dumps(document)
    for encoded in (
        text.encode("utf-16"),
        text.encode("utf-32"),
        b"\xef\xbb\xbf" + text.encode(),
    ):
        with pytest.raises(JsonInputError):
            loads_bounded(encoded)
    assert loads_bounded(text.encode("utf-8")) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "[Infinity]",
        '{"x": -Infinity}',
        "1e400",
        "-1e999999",
        "9" * (MAX_INT_DIGITS + 1),
        "-" + "9" * 5000,
        '{"a": 1, "a": 2}',
        '{"a": {"b": 1, "b": 1}}',
        '"nul\\u0000"',
        '{"k\\u0000": 1}',
        '"\\ud800"',
        '["\\udfff"]',
        "",
        "   ",
        '{"a": 1} trailing',
    ],
)
def test_hostile_values_are_refused(text: str) -> None:
    with pytest.raises(JsonInputError):
        loads_bounded(text)


def test_accepted_edge_values() -> None:
    assert loads_bounded("9" * MAX_INT_DIGITS) == int("9" * MAX_INT_DIGITS)
    assert loads_bounded('"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate *pair* is fine
    assert math.isclose(loads_bounded("1.5e300"), 1.5e300)
    assert loads_bounded('"nul\\u0000"', strict_strings=False) == "nul\x00"


def test_size_bound() -> None:
    with pytest.raises(JsonInputError, match="larger"):
        loads_bounded(b"[" + b"1," * 100 + b"1]", max_bytes=100)
    assert len(loads_bounded(b"[" + b"1," * 10 + b"1]", max_bytes=100)) == 11
