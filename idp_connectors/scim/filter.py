"""SCIM filters (RFC 7644 §3.4.2.2): a parser to a small AST, and its evaluation in Python.

``parse(text)`` tokenizes and parses with a recursive descent that follows the ABNF's
precedence (``not`` > ``and`` > ``or``, parentheses, ``attr[filter]`` value paths) and refuses
anything else with ``400 invalidFilter``: an unknown operator, a dangling token, a filter
longer than :data:`MAX_FILTER_LENGTH` or nested deeper than :data:`MAX_DEPTH`. The AST is
evaluated over resource representations (:func:`matches`) — never turned into SQL text — so
a filter cannot inject anything: at worst it matches nothing.

Comparison follows the attribute definitions (:mod:`idp_connectors.scim.schemas`): strings
ignore case unless ``caseExact``; ``dateTime`` values compare as instants; booleans allow
only ``eq``/``ne``; a multi-valued attribute matches when any value does; a complex
multi-valued attribute without a sub-attribute (``emails co "@x"``) compares its ``value``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from idp_connectors.scim.errors import BadRequest
from idp_connectors.scim.schemas import Attr, ResourceKind

__all__ = [
    "AttrPath",
    "Compare",
    "Present",
    "And",
    "Or",
    "Not",
    "ValuePath",
    "Filter",
    "parse",
    "parse_attr_path",
    "matches",
    "resolve",
    "attr_def",
    "MAX_FILTER_LENGTH",
    "MAX_DEPTH",
]

MAX_FILTER_LENGTH = 4096
MAX_DEPTH = 32
COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_ATTR = re.compile(r"^[A-Za-z$][\w$-]*(\.[A-Za-z$][\w$-]*)?$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([()\[\]])|([^\s()\[\]"]+))')


@dataclass(frozen=True)
class AttrPath:
    urn: str | None  # a schema URN prefix, e.g. the enterprise extension
    attr: str
    sub: str | None = None


@dataclass(frozen=True)
class Compare:
    path: AttrPath
    op: str
    value: Any  # str | bool | int | float | None


@dataclass(frozen=True)
class Present:
    path: AttrPath


@dataclass(frozen=True)
class And:
    left: Filter
    right: Filter


@dataclass(frozen=True)
class Or:
    left: Filter
    right: Filter


@dataclass(frozen=True)
class Not:
    inner: Filter


@dataclass(frozen=True)
class ValuePath:
    path: AttrPath
    inner: Filter


Filter = Compare | Present | And | Or | Not | ValuePath


def _invalid(detail: str) -> BadRequest:
    return BadRequest(detail, "invalidFilter")


def parse_attr_path(text: str) -> AttrPath:
    """``[urn:]attr[.sub]``; raises ``invalidFilter`` for anything else."""
    urn: str | None = None
    rest = text
    if text.lower().startswith("urn:"):
        urn, _, rest = text.rpartition(":")
        if not urn or not rest:
            raise _invalid("bad attribute path")
    if not _ATTR.match(rest):
        raise _invalid("bad attribute path")
    attr, _, sub = rest.partition(".")
    return AttrPath(urn, attr, sub or None)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _invalid("unexpected character in filter")
        pos = m.end()
        if m.group(1) is not None:
            try:
                out.append(("str", json.loads(m.group(1))))
            except ValueError as exc:
                raise _invalid("bad string in filter") from exc
        elif m.group(2) is not None:
            out.append(("punct", m.group(2)))
        else:
            out.append(("word", m.group(3)))
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.in_value_path = False

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise _invalid("filter ends too early")
        self.pos += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "word" and tok[1].lower() == word:
            self.pos += 1
            return True
        return False

    def expect(self, punct: str) -> None:
        if self.take() != ("punct", punct):
            raise _invalid(f"expected {punct!r} in filter")

    def filter(self) -> Filter:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _invalid("filter nested too deeply")
        left = self.conjunction()
        while self.keyword("or"):
            left = Or(left, self.conjunction())
        self.depth -= 1
        return left

    def conjunction(self) -> Filter:
        left = self.unary()
        while self.keyword("and"):
            left = And(left, self.unary())
        return left

    def unary(self) -> Filter:
        if self.keyword("not"):
            self.expect("(")
            inner = self.filter()
            self.expect(")")
            return Not(inner)
        tok = self.take()
        if tok == ("punct", "("):
            inner = self.filter()
            self.expect(")")
            return inner
        if tok[0] != "word":
            raise _invalid("expected an attribute path")
        path = parse_attr_path(tok[1])
        if self.peek() == ("punct", "["):
            self.take()
            if self.in_value_path:  # valFilter holds attribute expressions only (ABNF)
                raise _invalid("a value path cannot hold another value path")
            self.in_value_path = True
            inner = self.filter()
            self.in_value_path = False
            self.expect("]")
            after = self.peek()
            if after is not None and after[0] == "word" and after[1].startswith("."):
                # emails[type eq "work"].value eq "x" (what Entra matches users on): the
                # same as emails[type eq "work" and value eq "x"]
                self.take()
                sub = parse_attr_path(after[1][1:])
                if sub.urn is not None or sub.sub is not None:
                    raise _invalid("bad sub-attribute after ]")
                inner = And(inner, self.comparison(sub))
            return ValuePath(path, inner)
        return self.comparison(path)

    def comparison(self, path: AttrPath) -> Filter:
        op_tok = self.take()
        op = op_tok[1].lower() if op_tok[0] == "word" else ""
        if op == "pr":
            return Present(path)
        if op not in COMPARE_OPS:
            raise _invalid("unknown comparison operator")
        return Compare(path, op, self.value())

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return text
        if kind != "word":
            raise _invalid("expected a comparison value")
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        if _NUMBER.match(text):
            return float(text) if any(c in text for c in ".eE") else int(text)
        raise _invalid("comparison values are strings, numbers, true, false or null")


def parse(text: str) -> Filter:
    """The AST of ``text``; raises :class:`BadRequest` (``invalidFilter``) when it is not a
    filter of RFC 7644 §3.4.2.2."""
    if not text or not text.strip():
        raise _invalid("empty filter")
    if len(text) > MAX_FILTER_LENGTH:
        raise _invalid(f"filter longer than {MAX_FILTER_LENGTH} characters")
    parser = _Parser(_tokens(text))
    result = parser.filter()
    if parser.peek() is not None:
        raise _invalid("unexpected text after the filter")
    return result


def _get(obj: Any, name: str) -> Any:
    if not isinstance(obj, dict):
        return None
    low = name.lower()
    return next((v for k, v in obj.items() if k.lower() == low), None)


def attr_def(kind: ResourceKind, path: AttrPath, parent: Attr | None = None) -> Attr | None:
    """The definition behind ``path`` (inside ``parent`` for a value-path filter)."""
    if parent is not None:
        top = parent.child(path.attr)
    elif path.urn is not None and path.urn.lower() != kind.core.id.lower():
        ext = kind.extension(path.urn)
        top = ext.attr(path.attr) if ext is not None else None
    else:
        top = kind.top(path.attr)
    if top is None or path.sub is None:
        return top
    return top.child(path.sub)


def resolve(doc: dict[str, Any], kind: ResourceKind, path: AttrPath) -> list[Any]:
    """Every value ``path`` names in ``doc`` (flattened over multi-valued attributes)."""
    base: Any = doc
    if path.urn is not None and path.urn.lower() != kind.core.id.lower():
        base = _get(doc, path.urn)
    top = _get(base, path.attr)
    items = top if isinstance(top, list) else ([] if top is None else [top])
    values: list[Any] = []
    for item in items:
        if path.sub is not None:
            value = _get(item, path.sub)
        elif isinstance(item, dict):
            value = _get(item, "value")
        else:
            value = item
        if isinstance(value, list):
            values.extend(value)
        elif value is not None:
            values.append(value)
    return values


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _compare(actual: Any, op: str, wanted: Any, definition: Attr | None) -> bool:
    kind = definition.type if definition is not None else "string"
    if isinstance(wanted, bool) or isinstance(actual, bool):
        if op not in ("eq", "ne"):
            raise _invalid("booleans compare with eq or ne only")
        return (actual == wanted) is (op == "eq")
    if kind == "dateTime":
        a, w = _instant(actual), _instant(wanted)
        if a is None or w is None or a.tzinfo is None or w.tzinfo is None:
            return False
        return _ordered(a, op, w)
    if isinstance(wanted, str) and isinstance(actual, str):
        if definition is None or not definition.case_exact:
            actual, wanted = actual.lower(), wanted.lower()
        if op == "co":
            return wanted in actual
        if op == "sw":
            return bool(actual.startswith(wanted))
        if op == "ew":
            return bool(actual.endswith(wanted))
        return _ordered(actual, op, wanted)
    if isinstance(wanted, int | float) and isinstance(actual, int | float):
        if op in ("co", "sw", "ew"):
            return False
        return _ordered(actual, op, wanted)
    return op == "ne"


def _ordered(a: Any, op: str, w: Any) -> bool:
    if op == "eq":
        return bool(a == w)
    if op == "ne":
        return bool(a != w)
    if op == "gt":
        return bool(a > w)
    if op == "ge":
        return bool(a >= w)
    if op == "lt":
        return bool(a < w)
    if op == "le":
        return bool(a <= w)
    return False


def matches(
    node: Filter, doc: dict[str, Any], kind: ResourceKind, parent: Attr | None = None
) -> bool:
    """Whether the representation ``doc`` of a ``kind`` resource satisfies ``node``.
    (``parent``: the multi-valued attribute whose element ``doc`` is, in a value path.)"""
    if isinstance(node, And):
        return matches(node.left, doc, kind, parent) and matches(node.right, doc, kind, parent)
    if isinstance(node, Or):
        return matches(node.left, doc, kind, parent) or matches(node.right, doc, kind, parent)
    if isinstance(node, Not):
        return not matches(node.inner, doc, kind, parent)
    if isinstance(node, ValuePath):
        outer = attr_def(kind, node.path, parent)
        base: Any = doc
        if node.path.urn is not None and node.path.urn.lower() != kind.core.id.lower():
            base = _get(doc, node.path.urn)
        items = _get(base, node.path.attr)
        elements = items if isinstance(items, list) else ([] if items is None else [items])
        return any(isinstance(e, dict) and matches(node.inner, e, kind, outer) for e in elements)
    values = _values(node.path, doc, kind, parent)
    definition = attr_def(kind, node.path, parent)
    if isinstance(node, Present):
        return any(v not in ("", [], {}) for v in values)
    if node.value is None:
        return bool(values) is (node.op == "ne")
    if node.op == "ne":
        return not any(_compare(v, "eq", node.value, definition) for v in values)
    return any(_compare(v, node.op, node.value, definition) for v in values)


def _values(
    path: AttrPath, doc: dict[str, Any], kind: ResourceKind, parent: Attr | None
) -> list[Any]:
    if parent is None:
        return resolve(doc, kind, path)
    value = _get(doc, path.attr)
    if path.sub is not None:
        value = _get(value, path.sub)
    if isinstance(value, list):
        return value
    return [] if value is None else [value]
