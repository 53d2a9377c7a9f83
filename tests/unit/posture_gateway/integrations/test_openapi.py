"""/openapi.json: a valid OpenAPI 3.1 document that covers every JSON route the app serves."""

from __future__ import annotations

import schemathesis
from flask import Flask

from posture_gateway.api.openapi import build_document, flask_rule_to_openapi_path, is_json_route

# No blueprint is exempt: every JSON route in the url_map is documented.
AWAITING_THEIR_OWNERS: set[str] = set()
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def test_document_is_openapi_3_1(app: Flask) -> None:
    document = app.test_client().get("/openapi.json").json
    assert document["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # against the OpenAPI 3.1 meta-schema


def test_every_json_route_is_documented(app: Flask) -> None:
    paths = build_document(app)["paths"]
    missing = []
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.rpartition(".")[0]
        if not is_json_route(app, rule.endpoint) or blueprint in AWAITING_THEIR_OWNERS:
            continue
        item = paths.get(flask_rule_to_openapi_path(rule.rule), {})
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            if method.lower() not in item:
                missing.append(f"{method} {rule.rule} ({rule.endpoint})")
    assert missing == []


def test_every_documented_operation_exists(app: Flask) -> None:
    served = {
        (flask_rule_to_openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - IGNORED_METHODS
    }
    documented = {
        (path, method) for path, item in build_document(app)["paths"].items() for method in item
    }
    assert documented - served == set()


def test_every_reference_resolves(app: Flask) -> None:
    document = build_document(app)
    schemas = document["components"]["schemas"]
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                refs.append(ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    unresolved = [r for r in refs if r.removeprefix("#/components/schemas/") not in schemas]
    assert unresolved == []


def test_operation_ids_are_unique(app: Flask) -> None:
    ids = [
        op["operationId"] for item in build_document(app)["paths"].values() for op in item.values()
    ]
    assert len(ids) == len(set(ids))
