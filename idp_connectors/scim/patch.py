"""PATCH operations (RFC 7644 §3.5.2) on a canonical resource document.

:func:`apply` takes the working document (stored attributes, ``externalId`` and, for a Group,
``members`` as ``[{"value", "type"}]``), a parsed ``PatchOp`` body and returns the new
document; it never mutates its input, so a refused operation changes nothing.

- ``op`` is ``add`` | ``remove`` | ``replace`` in any case (Entra sends ``Add``/``Replace``);
- without ``path`` the value is an object of attribute paths (``name.givenName``, an
  extension URN or a URN-prefixed attribute) applied one by one (Okta's deactivation
  ``{"op": "replace", "value": {"active": false}}``; Okta also sends the group's own ``id``
  in such a value, accepted when it is unchanged);
- ``path`` is ``attr``, ``attr.sub``, ``urn:…:attr[.sub]`` or a value path ``attr[filter]``
  with an optional ``.sub`` (Entra's ``members[value eq "…"]`` remove,
  ``emails[type eq "work"].value`` replace);
- ``remove`` on ``members`` with a value removes those members (the shape Entra sends);
- ``replace``/``add`` through a value path that matches nothing creates the element when the
  filter is only ``eq`` tests on sub-attributes and a sub-attribute is targeted (Entra sets
  ``emails[type eq "work"].value`` on a user with no work email); any other miss is
  ``400 noTarget``;
- ``readOnly`` targets (``id``, ``meta``, ``groups``) are ``400 mutability``; an unknown
  attribute is ``400 invalidPath``; a remove without path is ``400 noTarget``;
- a value with ``primary: true`` clears ``primary`` on the attribute's other values.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from idp_connectors.scim.errors import BadRequest
from idp_connectors.scim.filter import (
    And,
    AttrPath,
    Compare,
    Filter,
    matches,
    parse,
    parse_attr_path,
)
from idp_connectors.scim.schemas import PATCH_OP, Attr, ResourceKind
from idp_connectors.scim.validate import normalize_value

__all__ = ["PatchPath", "parse_path", "apply", "MAX_OPERATIONS"]

MAX_OPERATIONS = 1000


@dataclass(frozen=True)
class PatchPath:
    path: AttrPath
    filter: Filter | None = None
    sub: str | None = None  # after a value path: ``emails[...].value``


def _invalid_path(detail: str) -> BadRequest:
    return BadRequest(detail, "invalidPath")


def parse_path(text: str) -> PatchPath:
    """Parse a PATCH ``path`` (RFC 7644 §3.5.2 ``PATH``)."""
    if not isinstance(text, str) or not text.strip() or len(text) > 4096:
        raise _invalid_path("path must be a non-empty string")
    text = text.strip()
    bracket = text.find("[")
    try:
        if bracket < 0:
            return PatchPath(parse_attr_path(text))
        close = text.rfind("]")
        if close < bracket:
            raise _invalid_path("unbalanced [ in path")
        head, inner, tail = text[:bracket], text[bracket + 1 : close], text[close + 1 :]
        path = parse_attr_path(head)
        if path.sub is not None:
            raise _invalid_path("a value path filters a multi-valued attribute")
        sub = None
        if tail:
            if not tail.startswith(".") or not tail[1:].replace("$", "").isalnum():
                raise _invalid_path("bad sub-attribute after ]")
            sub = tail[1:]
        return PatchPath(path, parse(inner), sub)
    except BadRequest as exc:
        if exc.scim_type == "invalidPath":
            raise
        raise _invalid_path(f"bad path: {exc.detail}") from exc


class _Patcher:
    def __init__(self, kind: ResourceKind, doc: dict[str, Any], resource_id: str) -> None:
        self.kind = kind
        self.doc = doc
        self.resource_id = resource_id

    def container(self, path: AttrPath, create: bool) -> tuple[dict[str, Any] | None, Attr]:
        """The object that holds ``path.attr`` and its definition."""
        if path.urn is not None and path.urn.lower() != self.kind.core.id.lower():
            ext = self.kind.extension(path.urn)
            if ext is None:
                raise _invalid_path(f"unknown schema {path.urn}")
            attr = ext.attr(path.attr)
            if attr is None:
                raise _invalid_path(f"unknown attribute {path.attr}")
            if ext.id not in self.doc and create:
                self.doc[ext.id] = {}
            return self.doc.get(ext.id), attr
        attr = self.kind.top(path.attr)
        if attr is None:
            raise _invalid_path(f"unknown attribute {path.attr}")
        return self.doc, attr

    def run(self, op: str, raw_path: Any, value: Any) -> None:
        if raw_path is None:
            if op == "remove":
                raise BadRequest("remove needs a path", "noTarget")
            if not isinstance(value, dict):
                raise BadRequest("an operation without path needs an object value", "invalidSyntax")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise BadRequest("attribute names are strings", "invalidSyntax")
                ext = self.kind.extension(key) if key.lower().startswith("urn:") else None
                if ext is not None:
                    if not isinstance(item, dict):
                        raise BadRequest(f"{ext.id} must be an object", "invalidValue")
                    for sub_key, sub_item in item.items():
                        if sub_key == "schemas":
                            continue
                        self.at(op, PatchPath(AttrPath(ext.id, *_split(sub_key))), sub_item)
                    continue
                self.at(op, parse_path(key), item)
            return
        self.at(op, parse_path(raw_path), value)

    def at(self, op: str, target: PatchPath, value: Any) -> None:
        path = target.path
        if path.urn is not None and path.attr.lower() in {
            e.id.rpartition(":")[2].lower() for e in self.kind.extensions
        }:
            ext = self.kind.extension(f"{path.urn}:{path.attr}")
            if ext is not None and path.sub is None and target.filter is None:
                # the whole extension: {"op": "add", "path": "urn:…:User", "value": {...}}
                if op == "remove":
                    self.doc.pop(ext.id, None)
                else:
                    self.run(op, None, {ext.id: value})
                return
        holder, attr = self.container(path, create=op != "remove")
        if attr.name == "id" and op != "remove" and value == self.resource_id:
            return  # Okta repeats the group's id in a replace value
        sub_attr = attr.child(path.sub) if path.sub else None
        if path.sub and sub_attr is None:
            raise _invalid_path(f"unknown attribute {attr.name}.{path.sub}")
        leaf = sub_attr or attr
        if attr.mutability == "readOnly" or leaf.mutability == "readOnly":
            raise BadRequest(f"{attr.name} is read-only", "mutability")
        if holder is None:  # remove from an absent extension
            return
        if target.filter is not None:
            self.filtered(op, holder, attr, target, value)
        elif path.sub is not None:
            self.sub_attribute(op, holder, attr, path.sub, value)
        else:
            self.whole(op, holder, attr, value)

    def whole(self, op: str, holder: dict[str, Any], attr: Attr, value: Any) -> None:
        if op == "remove":
            if attr.multi and isinstance(value, list) and value:
                drop = [v.get("value") if isinstance(v, dict) else v for v in value]
                kept = [e for e in holder.get(attr.name, []) if e.get("value") not in drop]
                _set(holder, attr.name, kept or None)
            else:
                holder.pop(attr.name, None)
            return
        if attr.name == "manager" and isinstance(value, str):
            value = {"value": value}  # Entra: the manager id as a plain string
        if attr.multi:
            items = value if isinstance(value, list) else [value]
            checked = normalize_value(attr, items, attr.name, lenient_bool=True) or []
            current = list(holder.get(attr.name, [])) if op == "add" else []
            if any(isinstance(v, dict) and v.get("primary") is True for v in checked):
                current = [{**e, "primary": False} if e.get("primary") else e for e in current]
            for item in checked:
                key = item.get("value") if attr.name == "members" else item
                if attr.name == "members":
                    current = [e for e in current if e.get("value") != key]
                elif item in current:
                    continue
                current.append(item)
            _set(holder, attr.name, current or None)
            return
        checked = normalize_value(attr, value, attr.name, lenient_bool=True)
        if attr.type == "complex" and isinstance(holder.get(attr.name), dict) and checked:
            _set(holder, attr.name, {**holder[attr.name], **checked})
        else:
            _set(holder, attr.name, checked)

    def sub_attribute(
        self, op: str, holder: dict[str, Any], attr: Attr, sub: str, value: Any
    ) -> None:
        sub_attr = attr.child(sub)
        assert sub_attr is not None
        targets: list[dict[str, Any]]
        if attr.multi:
            targets = [e for e in holder.get(attr.name, []) if isinstance(e, dict)]
        else:
            current = holder.get(attr.name)
            if current is None and op != "remove":
                current = {}
                holder[attr.name] = current
            targets = [current] if isinstance(current, dict) else []
        checked = (
            None
            if op == "remove"
            else normalize_value(sub_attr, value, f"{attr.name}.{sub}", lenient_bool=True)
        )
        for element in targets:
            _set(element, sub_attr.name, checked)
        self.tidy(holder, attr)

    def filtered(
        self, op: str, holder: dict[str, Any], attr: Attr, target: PatchPath, value: Any
    ) -> None:
        if not attr.multi:
            raise _invalid_path(f"{attr.name} is not multi-valued")
        assert target.filter is not None
        elements = [e for e in holder.get(attr.name, []) if isinstance(e, dict)]
        hits = [i for i, e in enumerate(elements) if matches(target.filter, e, self.kind, attr)]
        sub_attr = attr.child(target.sub) if target.sub else None
        if target.sub and sub_attr is None:
            raise _invalid_path(f"unknown attribute {attr.name}.{target.sub}")
        if op == "remove":
            if sub_attr is None:
                elements = [e for i, e in enumerate(elements) if i not in hits]
            else:
                for i in hits:
                    elements[i] = {k: v for k, v in elements[i].items() if k != sub_attr.name}
            _set(holder, attr.name, [e for e in elements if e] or None)
            return
        if sub_attr is not None:
            checked = normalize_value(
                sub_attr, value, f"{attr.name}.{sub_attr.name}", lenient_bool=True
            )
            if not hits:
                seed = _seed(target.filter, attr)
                if seed is None:
                    raise BadRequest(f"no {attr.name} value matches the filter", "noTarget")
                elements.append(seed)
                hits = [len(elements) - 1]
            for i in hits:
                elements[i] = {**elements[i], sub_attr.name: checked}
        else:
            if not hits:
                raise BadRequest(f"no {attr.name} value matches the filter", "noTarget")
            checked_item = normalize_value(attr, [value], attr.name, lenient_bool=True)
            replacement: dict[str, Any] = checked_item[0] if checked_item else {}
            for i in hits:
                elements[i] = replacement if op == "replace" else {**elements[i], **replacement}
        _set(holder, attr.name, [e for e in elements if e] or None)
        self.tidy(holder, attr)

    def tidy(self, holder: dict[str, Any], attr: Attr) -> None:
        values = holder.get(attr.name)
        if isinstance(values, dict) and not values:
            holder.pop(attr.name)


def _split(name: str) -> tuple[str, str | None]:
    attr, _, sub = name.partition(".")
    return attr, sub or None


def _seed(node: Filter, attr: Attr) -> dict[str, Any] | None:
    """The element an ``eq``-only filter describes (``type eq "work"`` -> ``{"type":
    "work"}``), or ``None`` when the filter says anything else."""
    if isinstance(node, And):
        left, right = _seed(node.left, attr), _seed(node.right, attr)
        return None if left is None or right is None else {**left, **right}
    if isinstance(node, Compare) and node.op == "eq" and node.path.sub is None:
        sub = attr.child(node.path.attr)
        if sub is not None and sub.mutability != "readOnly" and node.value is not None:
            return {sub.name: node.value}
    return None


def _set(holder: dict[str, Any], name: str, value: Any) -> None:
    if value is None or value == [] or value == {}:
        holder.pop(name, None)
    else:
        holder[name] = value


def apply(
    kind: ResourceKind, doc: dict[str, Any], body: Any, *, resource_id: str
) -> dict[str, Any]:
    """``doc`` after the operations of the PatchOp ``body`` (a new dict)."""
    if not isinstance(body, dict):
        raise BadRequest("a PatchOp is a JSON object", "invalidSyntax")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or PATCH_OP not in schemas:
        raise BadRequest(f"schemas must list {PATCH_OP}", "invalidSyntax")
    operations = next((v for k, v in body.items() if k.lower() == "operations"), None)
    if not isinstance(operations, list) or not operations:
        raise BadRequest("Operations must be a non-empty array", "invalidSyntax")
    if len(operations) > MAX_OPERATIONS:
        raise BadRequest(f"more than {MAX_OPERATIONS} operations", "tooMany")
    patcher = _Patcher(kind, copy.deepcopy(doc), resource_id)
    for operation in operations:
        if not isinstance(operation, dict):
            raise BadRequest("each operation is an object", "invalidSyntax")
        fields = {k.lower(): v for k, v in operation.items() if isinstance(k, str)}
        op = fields.get("op")
        if not isinstance(op, str) or op.lower() not in ("add", "remove", "replace"):
            raise BadRequest("op must be add, remove or replace", "invalidSyntax")
        if op.lower() != "remove" and "value" not in fields:
            raise BadRequest(f"{op} needs a value", "invalidSyntax")
        patcher.run(op.lower(), fields.get("path"), fields.get("value"))
    return patcher.doc
