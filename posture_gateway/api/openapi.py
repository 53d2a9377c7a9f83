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

from posture_gateway.api.openapi_device_admin import BLUEPRINT_PATHS, SECURITY_SCHEMES
from posture_gateway.api.openapi_parts import with_admin_auth_limit

__all__ = [
    "bp",
    "build_document",
    "not_json",
    "is_json_route",
    "flask_rule_to_openapi_path",
    "NOT_JSON_ENDPOINTS",
    "OPENAPI_PATHS",
]

bp = Blueprint("openapi", __name__)

F = TypeVar("F", bound=Callable[..., Any])


def not_json(reason: str) -> Callable[[F], F]:
    """Mark a view as not part of the JSON API (``reason``: "html page", "form_post", ...)."""

    def mark(view: F) -> F:
        view.openapi_exempt = reason  # type: ignore[attr-defined]
        return view

    return mark


def is_json_route(app: Flask, endpoint: str) -> bool:
    """Whether the route behind ``endpoint`` belongs in the JSON API document."""
    view = app.view_functions.get(endpoint)
    return endpoint not in NOT_JSON_ENDPOINTS and not getattr(view, "openapi_exempt", None)


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
    "properties": {
        "status": {"type": "string"},
        "backend": {"type": "string"},
        "reason": {"type": "string"},
    },
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
_OAUTH_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "error_description": {"type": "string"},
        "reason": {"type": "string"},
    },
    "required": ["error"],
}
_FORM = "application/x-www-form-urlencoded"


def _form_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"required": True, "content": {_FORM: {"schema": schema}}}


_STRING = {"type": "string"}
_USERINFO = {
    "summary": "UserInfo (OpenID Connect Core 5.3): claims about the token's subject",
    "tags": ["oidc"],
    "security": [{"bearerAccessToken": []}],
    "responses": {
        "200": _json(
            "Claims released by the token's scopes",
            {"type": "object", "properties": {"sub": _STRING}, "required": ["sub"]},
        ),
        "401": _json("No or invalid access token", _OAUTH_ERROR),
        "403": _json("The token lacks the openid scope", _OAUTH_ERROR),
        "503": _json("Cannot answer now", _OAUTH_ERROR),
    },
}

# Routes that answer HTML, redirects or form posts (browser flows), by endpoint name; the
# document covers JSON APIs only. Views can also say so with @not_json.
NOT_JSON_ENDPOINTS = frozenset(
    {
        "static",
        "oidc.end_session",  # RP-initiated logout: redirect or HTML page
        "oidc_login.authorize",  # the authorization endpoint: redirects to the login pages
        "oidc_login.login_page",
        "oidc_login.password",
        "oidc_login.begin",
        "oidc_login.device_page",
        "oidc_login.device_submit",
        "oidc_login.continue_after_warning",
    }
)

_BLUEPRINT_PATHS: dict[str, dict[str, Any]] = {
    # The OpenID provider's JSON endpoints (OpenID Connect Discovery 1.0, RFC 7517, RFC 6749,
    # OpenID Connect Core 5.3, RFC 7662, RFC 7009).
    "oidc": {
        "/.well-known/openid-configuration": {
            "get": {
                "operationId": "oidcDiscovery",
                "summary": "OpenID Provider Metadata",
                "tags": ["oidc"],
                "security": [],
                "responses": {
                    "200": _json(
                        "Provider metadata",
                        {
                            "type": "object",
                            "required": ["issuer", "authorization_endpoint", "jwks_uri"],
                        },
                    )
                },
            }
        },
        "/jwks.json": {
            "get": {
                "operationId": "oidcJwks",
                "summary": "The provider's public signing keys (JWK Set, with x5c)",
                "tags": ["oidc"],
                "security": [],
                "responses": {
                    "200": _json(
                        "JWK Set",
                        {
                            "type": "object",
                            "properties": {"keys": {"type": "array"}},
                            "required": ["keys"],
                        },
                    )
                },
            }
        },
        "/oauth/token": {
            "post": {
                "operationId": "oauthToken",
                "summary": "Token endpoint: code (PKCE), refresh token, client credentials",
                "tags": ["oidc"],
                "security": [{"clientSecretBasic": []}, {}],
                "requestBody": _form_body(
                    {
                        "grant_type": _STRING,
                        "code": _STRING,
                        "redirect_uri": _STRING,
                        "code_verifier": _STRING,
                        "refresh_token": _STRING,
                        "client_id": _STRING,
                        "client_secret": _STRING,
                        "scope": _STRING,
                    },
                    ["grant_type"],
                ),
                "responses": {
                    "200": _json(
                        "Tokens",
                        {
                            "type": "object",
                            "properties": {
                                "access_token": _STRING,
                                "token_type": _STRING,
                                "expires_in": {"type": "integer"},
                                "scope": _STRING,
                                "id_token": _STRING,
                                "refresh_token": _STRING,
                            },
                            "required": ["access_token", "token_type"],
                        },
                    ),
                    "400": _json("OAuth error (RFC 6749 5.2)", _OAUTH_ERROR),
                    "401": _json("Client authentication failed", _OAUTH_ERROR),
                    "503": _json("Cannot issue now (fail closed)", _OAUTH_ERROR),
                },
            }
        },
        "/oauth/userinfo": {
            "get": {"operationId": "oidcUserinfoGet", **_USERINFO},
            "post": {"operationId": "oidcUserinfoPost", **_USERINFO},
        },
        "/oauth/introspect": {
            "post": {
                "operationId": "oauthIntrospect",
                "summary": "Token introspection (RFC 7662)",
                "tags": ["oidc"],
                "security": [{"clientSecretBasic": []}],
                "requestBody": _form_body(
                    {"token": _STRING, "token_type_hint": _STRING}, ["token"]
                ),
                "responses": {
                    "200": _json(
                        "Introspection response",
                        {
                            "type": "object",
                            "properties": {"active": {"type": "boolean"}},
                            "required": ["active"],
                        },
                    ),
                    "400": _json("Malformed request", _OAUTH_ERROR),
                    "401": _json("Client authentication failed", _OAUTH_ERROR),
                    "503": _json("Cannot answer now", _OAUTH_ERROR),
                },
            }
        },
        "/oauth/revoke": {
            "post": {
                "operationId": "oauthRevoke",
                "summary": "Token revocation (RFC 7009)",
                "tags": ["oidc"],
                "security": [{"clientSecretBasic": []}, {}],
                "requestBody": _form_body(
                    {"token": _STRING, "token_type_hint": _STRING}, ["token"]
                ),
                "responses": {
                    "200": {"description": "Revoked (or unknown: the same answer)"},
                    "400": _json("Malformed request", _OAUTH_ERROR),
                    "401": _json("Client authentication failed", _OAUTH_ERROR),
                    "503": _json("Cannot answer now", _OAUTH_ERROR),
                },
            }
        },
    },
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
                "summary": "Readiness: the store (and Redis, when configured) is reachable",
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
    schemes: dict[str, Any] = {}  # a module's own OPENAPI_SECURITY_SCHEMES (e.g. scimBearer)
    for name, blueprint in app.blueprints.items():
        paths.update(_BLUEPRINT_PATHS.get(name, {}))
        paths.update(BLUEPRINT_PATHS.get(name, {}))  # device protocol and admin API
        module = sys.modules.get(blueprint.import_name)
        if module is None:
            continue
        paths.update(getattr(module, "OPENAPI_PATHS", {}))
        schemas.update(_model_schemas(tuple(getattr(module, "OPENAPI_MODELS", ()))))
        schemes.update(getattr(module, "OPENAPI_SECURITY_SCHEMES", {}))
    base = app.extensions["posture"].settings.public_url  # the GatewayState create_app set
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Posture Gateway",
            "version": "0.1.0",
            "description": "JSON APIs of the Posture Gateway: posture decisions for identity "
            "providers and proxies, IdP hooks, OpenID provider endpoints, the device protocol "
            "(/mdm/v1), the admin API (/admin/api), health.\n\n"
            "A posture decision with a device proof is three steps: `POST /api/v1/nonce` "
            "(a single-use nonce bound to this API's audience and to the caller), the device "
            "signs a login proof over that nonce and audience, `POST /api/v1/decision` with "
            "it in `device_proof`. See the `issueDecisionNonce` operation.",
        },
        "servers": [{"url": base or "/"}],
        "paths": dict(sorted(with_admin_auth_limit(paths).items())),
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
                "bearerAccessToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token issued by this gateway's token endpoint",
                },
                "clientSecretBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "OAuth client authentication (client_secret_basic)",
                },
                **SECURITY_SCHEMES,
                **schemes,
                "oktaHookSecret": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "The inline hook's shared secret configured in Okta",
                },
            },
        },
    }


_DOCUMENT_KEY = "posture_openapi"


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if _DOCUMENT_KEY not in app.extensions:  # built once, at the first request
        app.extensions[_DOCUMENT_KEY] = build_document(app)
    return jsonify(app.extensions[_DOCUMENT_KEY])
