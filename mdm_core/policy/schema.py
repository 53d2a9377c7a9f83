"""The policy file format as a JSON Schema, and shape checks that report ``file:line``.

:data:`POLICY_SCHEMA` is the source of truth; ``policies/schema/policy.schema.json`` is its
published copy (editors use it for completion; a test keeps the two equal). Shape is checked
here; meaning (CEL, duplicates, conflicts, group references) in :mod:`mdm_core.policy.compiler`.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from mdm_core.policy.errors import Problem
from mdm_core.policy.source import PathKey, SourceDocument
from mdm_core.posture.model import POSTURE_FIELDS, Ownership, Platform

__all__ = [
    "POLICY_SCHEMA",
    "KINDS",
    "CHECK_KEYS",
    "schema_problems",
    "schema_json",
    "DURATION_PATTERN",
    "ID_PATTERN",
]

DURATION_PATTERN = r"^[0-9]{1,6}(s|m|h|d|w)$"
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
VERSION_PATTERN = r"^[0-9]{1,5}(\.[0-9]{1,5}){0,3}$"

KINDS = (
    "CompliancePolicy",
    "AccessPolicy",
    "ConfigurationPolicy",
    "OffboardingPolicy",
    "PrivacyProfile",
)

_PLATFORMS = [p.value for p in Platform]
_OWNERSHIPS = [o.value for o in Ownership]
_REQUIRED = {"const": "required", "description": "the only value: `required`"}
_STR = {"type": "string", "minLength": 1, "maxLength": 256}
_STR_LIST = {"type": "array", "items": _STR, "uniqueItems": True, "maxItems": 500}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 2000}
_DURATION = {"type": "string", "pattern": DURATION_PATTERN}

#: Typed checks of a compliance rule (exactly one per rule, or ``cel``).
CHECK_SCHEMAS: dict[str, dict[str, Any]] = {
    "storage_encrypted": _REQUIRED,
    "min_os_version": {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"enum": _PLATFORMS},
        "additionalProperties": {"type": "string", "pattern": VERSION_PATTERN},
    },
    "min_security_patch_level": {
        "type": "string",
        "description": "maximum age (e.g. 90d) or an oldest accepted date (YYYY-MM-DD)",
        "anyOf": [{"pattern": DURATION_PATTERN}, {"pattern": DATE_PATTERN}],
    },
    "passcode_min_length": {"type": "integer", "minimum": 1, "maximum": 64},
    "not_jailbroken": {"const": True},
    "screen_lock_max_timeout": _DURATION,
    "firewall": _REQUIRED,
    "secure_boot": _REQUIRED,
    "agent_present": _REQUIRED,
    "mdm_profile_present": _REQUIRED,
    "work_profile_present": _REQUIRED,
    "required_apps": {**_STR_LIST, "minItems": 1},
    "forbidden_apps": {**_STR_LIST, "minItems": 1},
    "vulnerable_os_builds": {**_STR_LIST, "minItems": 1},
    "cel": {"type": "string", "minLength": 1, "maxLength": 4000},
}
CHECK_KEYS: tuple[str, ...] = tuple(CHECK_SCHEMAS)

_ASSIGN = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "groups": {**_STR_LIST, "minItems": 1},
        "platforms": {
            "type": "array",
            "items": {"enum": _PLATFORMS},
            "uniqueItems": True,
            "minItems": 1,
        },
        "ownership": {
            "type": "array",
            "items": {"enum": _OWNERSHIPS},
            "uniqueItems": True,
            "minItems": 1,
        },
    },
}

_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "severity", "remediation"],
    "properties": {
        "id": {"type": "string", "pattern": ID_PATTERN},
        "severity": {"enum": ["critical", "high", "medium", "low"]},
        "message": _TEXT,
        "remediation": _TEXT,
        "grace": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {"warn": _DURATION, "restrict": _DURATION, "block": _DURATION},
        },
        "platforms": _ASSIGN["properties"]["platforms"],  # type: ignore[index]
        "ownership": _ASSIGN["properties"]["ownership"],  # type: ignore[index]
        **CHECK_SCHEMAS,
    },
}

_ACCESS = {
    "description": "allow | deny | {scopes: [...]} (allowed, with only these scopes)",
    "anyOf": [
        {"enum": ["allow", "deny"]},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["scopes"],
            "properties": {"scopes": {**_STR_LIST, "minItems": 1}},
        },
    ],
}

_COMMON = {
    "kind": {"enum": list(KINDS)},
    "id": {"type": "string", "pattern": ID_PATTERN},
    "description": _TEXT,
}


def _kind(name: str, required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["kind", "id", *required],
        "properties": {**_COMMON, "kind": {"const": name}, **properties},
    }


_DEFS: dict[str, Any] = {
    "CompliancePolicy": _kind(
        "CompliancePolicy",
        ["assign", "rules"],
        {
            "mode": {"enum": ["enforce", "report-only"]},
            "assign": _ASSIGN,
            "max_posture_age": _DURATION,
            "rules": {"type": "array", "minItems": 1, "maxItems": 500, "items": _RULE},
        },
    ),
    "AccessPolicy": _kind(
        "AccessPolicy",
        ["applications", "sensitivity"],
        {
            "applications": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "minProperties": 1,
                    "properties": {"client_id": _STR, "entity_id": _STR, "name": _STR},
                },
            },
            "sensitivity": {"enum": ["low", "medium", "high", "critical"]},
            "outcomes": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"warn": _ACCESS, "restrict": _ACCESS},
            },
        },
    ),
    "ConfigurationPolicy": _kind(
        "ConfigurationPolicy",
        ["assign"],
        {
            "assign": _ASSIGN,
            "apps": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"install": _STR_LIST, "remove": _STR_LIST},
            },
            "certificates": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"install": _STR_LIST, "remove": _STR_LIST},
            },
        },
    ),
    "OffboardingPolicy": _kind(
        "OffboardingPolicy",
        ["actions"],
        {
            "assign": _ASSIGN,
            "actions": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    o: {"enum": ["selective_wipe", "full_wipe", "lock_and_retire"]}
                    for o in _OWNERSHIPS
                },
            },
            "two_person_rule": {
                "type": "boolean",
                "description": "a full wipe needs a second, different admin's approval",
            },
        },
    ),
    "PrivacyProfile": _kind(
        "PrivacyProfile",
        ["ownership", "collect", "notice"],
        {
            "ownership": {"enum": _OWNERSHIPS},
            "collect": {
                "type": "array",
                "uniqueItems": True,
                "items": {"enum": sorted(POSTURE_FIELDS)},
            },
            "notice": {
                "type": "object",
                "additionalProperties": False,
                "required": ["can_see", "cannot_see"],
                "properties": {
                    "can_see": {"type": "array", "items": _TEXT},
                    "cannot_see": {"type": "array", "items": _TEXT},
                },
            },
        },
    ),
}

POLICY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://posture-gateway.invalid/schema/policy.schema.json",
    "title": "Posture Gateway policy document",
    "description": "One YAML document of a file under policies/ (a file may hold several).",
    "type": "object",
    "required": ["kind", "id"],
    "properties": {"kind": {"enum": list(KINDS)}},
    "allOf": [
        {"if": {"properties": {"kind": {"const": k}}}, "then": {"$ref": f"#/$defs/{k}"}}
        for k in KINDS
    ],
    "$defs": _DEFS,
}


def schema_json() -> str:
    """The published schema text (``policies/schema/policy.schema.json``)."""
    return json.dumps(POLICY_SCHEMA, indent=2, sort_keys=False) + "\n"


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator({"$defs": _DEFS, "$ref": f"#/$defs/{kind}"})


def schema_problems(doc: SourceDocument) -> list[Problem]:
    """Shape problems of one document (empty when it matches the schema of its kind)."""
    data = doc.data
    if not isinstance(data, dict):
        return [doc.problem((), "a policy document must be a mapping with `kind` and `id`")]
    kind = data.get("kind")
    if kind not in KINDS:
        if "kind" not in data:
            return [doc.problem((), "missing required key 'kind'")]
        return [
            doc.problem(("kind",), f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
        ]
    errors = sorted(_validator(kind).iter_errors(data), key=lambda e: list(e.absolute_path))
    problems: list[Problem] = []
    for error in errors:
        problems.extend(_to_problems(doc, error))
    return problems


def _where(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


def _to_problems(doc: SourceDocument, error: ValidationError) -> list[Problem]:
    path: PathKey = tuple(error.absolute_path)
    where = _where(path)
    instance = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(schema.get("properties", {}))
        return [
            doc.problem((*path, key), f"{where}: unknown key {key!r}", key=True)
            for key in instance
            if key not in known
        ]
    if error.validator == "required" and isinstance(instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [k for k in required if k not in instance]
        return [doc.problem(path, f"{where}: missing required key {k!r}") for k in missing]
    if error.validator == "type":
        expected = error.validator_value
        hint = " (quote it)" if expected == "string" and isinstance(instance, int | float) else ""
        return [
            doc.problem(
                path,
                f"{where}: expected {expected}, got {type(instance).__name__} {instance!r}{hint}",
            )
        ]
    if error.validator in ("enum", "const"):
        allowed = error.validator_value
        allowed_txt = ", ".join(map(str, allowed)) if isinstance(allowed, list) else allowed
        return [doc.problem(path, f"{where}: {instance!r} is not allowed (use: {allowed_txt})")]
    if error.validator == "pattern":
        return [doc.problem(path, f"{where}: {instance!r} does not match {error.validator_value}")]
    if error.validator == "propertyNames":
        return [doc.problem(path, f"{where}: {error.message}")]
    if error.validator == "anyOf" and "description" in schema:
        return [doc.problem(path, f"{where}: {instance!r} is not valid: {schema['description']}")]
    return [doc.problem(path, f"{where}: {error.message}")]
