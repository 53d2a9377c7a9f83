"""Input validation: a client's resource JSON -> the canonical document we store.

:func:`normalize` walks the body with the schema (:mod:`idp_connectors.scim.schemas`):
attribute names become their canonical spelling (names are case-insensitive, RFC 7643 §2.1),
values are type-checked (``400 invalidValue`` naming the attribute), ``null`` and empty
arrays mean unassigned (dropped), ``readOnly`` attributes are ignored (RFC 7644 §3.3),
``writeOnly`` ones (``password``) are accepted and never stored, attributes of no schema are
ignored (clients send attributes a server does not model; RFC 7644 §3.3 lets it ignore
them), and extension attributes live under their schema URN. :func:`check_required` and
:func:`check_immutable` run on the result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from idp_connectors.scim.errors import BadRequest
from idp_connectors.scim.schemas import Attr, ResourceKind

__all__ = ["normalize", "normalize_value", "check_required", "check_immutable", "MAX_STRING"]

#: Longest string value accepted (the mirror's widest column is 320 characters; documents
#: hold longer free text such as addresses, but nothing near this).
MAX_STRING = 2048
_SKIP = frozenset({"id", "meta", "schemas"})


def _bad(detail: str) -> BadRequest:
    return BadRequest(detail, "invalidValue")


def _scalar(attr: Attr, value: Any, where: str, *, lenient_bool: bool) -> Any:
    t = attr.type
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if lenient_bool and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"  # Entra sends "True"/"False" in PATCH values
        raise _bad(f"{where} must be a boolean")
    if t == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(f"{where} must be an integer")
    if t == "decimal":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise _bad(f"{where} must be a number")
    if not isinstance(value, str):
        raise _bad(f"{where} must be a string")
    if len(value) > MAX_STRING:
        raise _bad(f"{where} is longer than {MAX_STRING} characters")
    if t == "dateTime":
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise _bad(f"{where} must be an xsd:dateTime") from exc
    return value


def normalize_value(attr: Attr, value: Any, where: str, *, lenient_bool: bool = False) -> Any:
    """``value`` checked against ``attr`` (a list for multi-valued ones); ``None`` means
    unassigned."""
    if value is None:
        return None
    if attr.multi:
        if not isinstance(value, list):
            raise _bad(f"{where} must be an array")
        items = [_single(attr, v, where, lenient_bool=lenient_bool) for v in value]
        kept = [v for v in items if v not in (None, {})]
        return kept or None
    return _single(attr, value, where, lenient_bool=lenient_bool)


def _single(attr: Attr, value: Any, where: str, *, lenient_bool: bool) -> Any:
    if value is None:
        return None
    if attr.type != "complex":
        return _scalar(attr, value, where, lenient_bool=lenient_bool)
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object")
    out: dict[str, Any] = {}
    for key, sub_value in value.items():
        sub = attr.child(key)
        if sub is None or sub.mutability in ("readOnly", "writeOnly"):
            continue
        checked = normalize_value(sub, sub_value, f"{where}.{sub.name}", lenient_bool=lenient_bool)
        if checked is not None:
            out[sub.name] = checked
    return out


def normalize(kind: ResourceKind, body: dict[str, Any]) -> dict[str, Any]:
    """The canonical document of ``body`` (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if not isinstance(key, str) or key.lower() in _SKIP:
            continue
        ext = kind.extension(key) if key.lower().startswith("urn:") else None
        if ext is not None:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise _bad(f"{ext.id} must be an object")
            ext_doc: dict[str, Any] = {}
            for sub_key, sub_value in value.items():
                attr = ext.attr(sub_key) if isinstance(sub_key, str) else None
                if attr is None or attr.mutability in ("readOnly", "writeOnly"):
                    continue
                if attr.name == "manager" and isinstance(sub_value, str):
                    sub_value = {"value": sub_value}  # Entra sends the manager id as a string
                checked = normalize_value(attr, sub_value, attr.name)
                if checked is not None:
                    ext_doc[attr.name] = checked
            if ext_doc:
                out[ext.id] = ext_doc
            continue
        attr = kind.top(key)
        if attr is None or attr.mutability in ("readOnly", "writeOnly"):
            continue
        checked = normalize_value(attr, value, attr.name)
        if checked is not None:
            out[attr.name] = checked
    return out


def check_required(kind: ResourceKind, doc: dict[str, Any]) -> None:
    for attr in kind.core.attributes:
        if attr.required and doc.get(attr.name) in (None, ""):
            raise _bad(f"{attr.name} is required")


def check_immutable(kind: ResourceKind, old: dict[str, Any], new: dict[str, Any]) -> None:
    """An ``immutable`` attribute that has a value keeps it (``400 mutability``)."""
    for attr in kind.core.attributes:
        if (
            attr.mutability == "immutable"
            and attr.name in old
            and new.get(attr.name) != old[attr.name]
        ):
            raise BadRequest(f"{attr.name} is immutable", "mutability")
