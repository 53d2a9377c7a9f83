"""The OpenAPI 3.1 document of every JSON API, served at ``/openapi.json``.

Each blueprint module that serves JSON declares, beside its endpoints, ``OPENAPI_PATHS`` (path
item objects, hand-written) and optionally ``OPENAPI_MODELS`` (pydantic models whose JSON
Schemas — JSON Schema 2020-12, the dialect of OpenAPI 3.1 — become ``components.schemas``).
:func:`build_document` collects them from the blueprints registered on the app, so the document
describes exactly what this app serves. Views that do not speak JSON (HTML pages, form_post
answers, redirects) say so with :func:`not_json`; a test checks every other route registered in
the app appears in the document.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel

__all__ = ["bp", "build_document", "not_json", "flask_rule_to_openapi_path", "OPENAPI_PATHS"]

bp = Blueprint("openapi", __name__)

F = TypeVar("F", bound=Callable[..., Any])


def not_json(reason: str) -> Callable[[F], F]:
    """Mark a view as not part of the JSON API (``reason``: "html page", "form_post", ...)."""

    def mark(view: F) -> F:
        view.openapi_exempt = reason  # type: ignore[attr-defined]
        return view

    return mark


def flask_rule_to_openapi_path(rule: str) -> str:
    """``/a/<int:b>/<c>`` -> ``/a/{b}/{c}``."""
    out: list[str] = []
    for part in rule.split("/"):
        if part.startswith("<") and part.endswith(">"):
            part = "{" + part[1:-1].split(":")[-1] + "}"
        out.append(part)
    return "/".join(out)


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_STATUS = {
    "type": "object",
    "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
    "required": ["status"],
}

# Path items of JSON routes whose modules predate this document (health probes) and of the
# document itself.
OPENAPI_PATHS: dict[str, Any] = {
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This OpenAPI 3.1 document",
            "tags": ["meta"],
            "security": [],
            "responses": {"200": _json("The document", {"type": "object"})},
        }
    },
}
_BLUEPRINT_PATHS: dict[str, dict[str, Any]] = {
    "health": {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness: the process is up",
                "tags": ["meta"],
                "security": [],
                "responses": {"200": _json("Up", _STATUS)},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: the store is reachable",
                "tags": ["meta"],
                "security": [],
                "responses": {
                    "200": _json("Ready", _STATUS),
                    "503": _json("Not ready", _STATUS),
                },
            }
        },
    },
}


def _model_schemas(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the JSON routes of ``app``."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name, blueprint in app.blueprints.items():
        paths.update(_BLUEPRINT_PATHS.get(name, {}))
        module = sys.modules.get(blueprint.import_name)
        if module is None:
            continue
        paths.update(getattr(module, "OPENAPI_PATHS", {}))
        schemas.update(_model_schemas(tuple(getattr(module, "OPENAPI_MODELS", ()))))
    public_url = getattr(app.extensions.get("posture"), "settings", None)
    base = public_url.public_url if public_url is not None else ""
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Posture Gateway",
            "version": "0.1.0",
            "description": "JSON APIs of the Posture Gateway: posture decisions for identity "
            "providers and proxies, IdP hooks, OpenID provider endpoints, health.",
        },
        "servers": [{"url": base or "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "clientCredentials": {
                    "type": "oauth2",
                    "description": "Access token from the gateway's own token endpoint "
                    "(client credentials grant) with scope posture.decide",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": f"{base}/oauth/token",
                            "scopes": {"posture.decide": "Ask for posture decisions"},
                        }
                    },
                },
                "forwardedClientCert": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Client-Cert",
                    "description": "mTLS: URL-encoded PEM client certificate forwarded by a "
                    "trusted proxy (accepted only from configured proxy addresses)",
                },
                "oktaHookSecret": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "The inline hook's shared secret configured in Okta",
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get("posture_openapi")
    if cached is None:
        cached = build_document(app)
        app.extensions["posture_openapi"] = cached
    return jsonify(cached)
