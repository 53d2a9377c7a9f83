"""The SCIM 2.0 HTTP binding at ``/scim/v2`` (RFC 7644): the Flask blueprint ``bp``.

Every request other than discovery carries ``Authorization: Bearer <token>`` of a configured
client (:mod:`idp_connectors.scim.config`); a missing or wrong token is ``401`` with the SCIM
error body and counts against the source address (``429`` past
``scim.auth_failures_per_minute``); each client is rate limited
(``scim.requests_per_minute``). Bodies are parsed with
:func:`mdm_core.support.json_input.loads_bounded` (size, depth, duplicate keys). Answers are
``application/scim+json``; errors are SCIM error messages (RFC 7644 §3.12).

The app wires it with :func:`init_app` (the gateway's factory passes its storage, rate
limiter and settings); this package imports nothing of the gateway.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from idp_connectors.scim.config import ClientDigests, ScimSettings, authenticate
from idp_connectors.scim.discovery import resource_types as resource_type_documents
from idp_connectors.scim.discovery import schemas as schema_documents
from idp_connectors.scim.discovery import service_provider_config as spc_document
from idp_connectors.scim.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ScimError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from idp_connectors.scim.etag import header_matches
from idp_connectors.scim.filter import attr_def, parse_attr_path
from idp_connectors.scim.openapi import OPENAPI_PATHS, OPENAPI_SECURITY_SCHEMES
from idp_connectors.scim.resources import MAX_RESULTS, Query, ScimService
from idp_connectors.scim.schemas import (
    GROUP_KIND,
    KINDS,
    LIST_RESPONSE,
    SCHEMAS,
    SEARCH_REQUEST,
    USER_KIND,
    ResourceKind,
    schema_document,
)
from mdm_core.directory.precedence import SourceOfTruth
from mdm_core.domain.errors import LimiterUnavailable, RateLimited
from mdm_core.ratelimit.guard import RateGuard
from mdm_core.ratelimit.limiter import RateLimiter
from mdm_core.storage.uow import Storage
from mdm_core.support.json_input import JsonInputError, loads_bounded

__all__ = [
    "bp",
    "init_app",
    "ScimState",
    "EXTENSION_KEY",
    "SCIM_JSON",
    "PREFIX",
    "OPENAPI_PATHS",
    "OPENAPI_SECURITY_SCHEMES",
]

PREFIX = "/scim/v2"
bp = Blueprint("scim", __name__, url_prefix=PREFIX)
EXTENSION_KEY = "scim"
SCIM_JSON = "application/scim+json"
_MINUTE = timedelta(minutes=1)
_INTEGER = re.compile(r"^-?[0-9]{1,11}$")


@dataclass
class ScimState:
    settings: ScimSettings
    digests: ClientDigests
    service: ScimService
    guard: RateGuard
    base_url: str


def init_app(
    app: Flask,
    settings: ScimSettings,
    *,
    storage: Storage,
    limiter: RateLimiter,
    public_url: str,
    source_of_truth: SourceOfTruth | None = None,
) -> ScimState:
    """Keep the SCIM state in ``app.extensions["scim"]`` and register :data:`bp`;
    ``source_of_truth`` (``directory.source_of_truth``) governs users other sources hold."""
    base = public_url.rstrip("/") + PREFIX
    st = ScimState(
        settings=settings,
        digests=ClientDigests.load(settings),
        service=ScimService(storage, base, source_of_truth=source_of_truth),
        guard=RateGuard(limiter, storage),
        base_url=base,
    )
    app.extensions[EXTENSION_KEY] = st
    app.register_blueprint(bp)
    return st


def _state() -> ScimState:
    st = current_app.extensions[EXTENSION_KEY]
    assert isinstance(st, ScimState)
    return st


def _answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype=SCIM_JSON)
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@bp.errorhandler(ScimError)
def _scim_error(exc: ScimError) -> Response:
    response = _answer(exc.body(), exc.status)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="scim"'
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


_DISCOVERY = frozenset(
    {
        "scim.service_provider_config",
        "scim.resource_types",
        "scim.resource_type",
        "scim.schemas",
        "scim.schema",
    }
)


@bp.before_request
def _authenticate() -> None:
    if request.endpoint in _DISCOVERY:
        return
    st = _state()
    try:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        token = presented.strip() if scheme.lower() == "bearer" else ""
        client = authenticate(st.digests, token) if token else None
        if client is None:
            # Guessing is limited per source address: refused (429) once over the limit,
            # before the guess counts; a client with its valid token is not guessing.
            source = f"scim:src:{request.remote_addr or '-'}"
            limit = st.settings.auth_failures_per_minute
            st.guard.failed("scim_auth_source", source, limit, _MINUTE, actor="-", subject=source)
            raise Unauthorized("a valid bearer token of a SCIM client is required")
        st.guard.hit(
            "scim_client",
            f"scim:client:{client}",
            st.settings.requests_per_minute,
            _MINUTE,
            actor=f"scim:{client}",
            subject="scim",
        )
    except RateLimited as exc:
        raise TooManyRequests("too many requests", exc.retry_after) from exc
    except LimiterUnavailable as exc:
        raise Unavailable("the rate limiter is unavailable") from exc
    g.scim_client = client


def _client() -> str:
    client = g.get("scim_client")
    if not isinstance(client, str):
        raise Unauthorized("a valid bearer token of a SCIM client is required")
    return client


def _body() -> Any:
    limit = _state().settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    try:
        data = request.get_data(cache=False)
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge("the body is too large") from exc
    try:
        return loads_bounded(data, max_bytes=limit)
    except JsonInputError as exc:
        if "too large" in str(exc):
            raise PayloadTooLarge(f"the body is larger than {limit} bytes") from exc
        raise BadRequest(f"the body is not valid JSON: {exc}", "invalidSyntax") from exc


def _object_body() -> dict[str, Any]:
    body = _body()
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", "invalidSyntax")
    return body


# --- attributes / excludedAttributes (RFC 7644 §3.4.2.5) ------------------------------------


def _names(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, list):
        items = raw
    elif isinstance(raw, str):
        items = raw.split(",")
    else:
        raise BadRequest("attributes must be a comma-separated list", "invalidValue")
    return [i.strip() for i in items if isinstance(i, str) and i.strip()]


def _project(
    kind: ResourceKind, doc: dict[str, Any], attributes: list[str], excluded: list[str]
) -> dict[str, Any]:
    if not attributes and not excluded:
        return doc
    if attributes:
        out: dict[str, Any] = {"schemas": doc["schemas"], "id": doc["id"]}
        for name in attributes:
            _copy(kind, doc, out, name)
        return out
    out = dict(doc)
    for name in excluded:
        path = parse_attr_path(name)
        definition = attr_def(kind, path)
        if definition is None or definition.returned == "always":
            continue
        container = _container(kind, out, path)
        if container is None:
            continue
        if path.sub is None:
            container.pop(_key(container, path.attr), None)
        else:
            inner = container.get(_key(container, path.attr))
            for element in inner if isinstance(inner, list) else [inner]:
                if isinstance(element, dict):
                    element.pop(_key(element, path.sub), None)
    return out


def _key(obj: dict[str, Any], name: str) -> str:
    return next((k for k in obj if k.lower() == name.lower()), name)


def _container(kind: ResourceKind, doc: dict[str, Any], path: Any) -> dict[str, Any] | None:
    if path.urn is not None and path.urn.lower() != kind.core.id.lower():
        key = _key(doc, path.urn)
        inner = doc.get(key)
        if isinstance(inner, dict):
            doc[key] = dict(inner)
            return doc[key]  # type: ignore[no-any-return]
        return None
    return doc


def _copy(kind: ResourceKind, src: dict[str, Any], dst: dict[str, Any], name: str) -> None:
    path = parse_attr_path(name)
    source = src
    target = dst
    if path.urn is not None and path.urn.lower() != kind.core.id.lower():
        ext = kind.extension(path.urn)
        if ext is None or ext.id not in src:
            return
        source = src[ext.id]
        target = dst.setdefault(ext.id, {})
    key = _key(source, path.attr)
    if key not in source:
        return
    value = source[key]
    if path.sub is None:
        target[key] = value
    elif isinstance(value, list):
        target[key] = [
            {_key(e, path.sub): e[_key(e, path.sub)]}
            for e in value
            if isinstance(e, dict) and _key(e, path.sub) in e
        ]
    elif isinstance(value, dict) and _key(value, path.sub) in value:
        target.setdefault(key, {})[_key(value, path.sub)] = value[_key(value, path.sub)]


def _wants_related(kind: ResourceKind, attributes: list[str], excluded: list[str]) -> bool:
    related = "members" if kind is GROUP_KIND else "groups"
    if attributes:
        return any(a.lower().split(".")[0] == related for a in attributes)
    return not any(e.lower() == related for e in excluded)


# --- discovery ------------------------------------------------------------------------------


def _list(
    resources: list[dict[str, Any]], total: int | None = None, start: int = 1
) -> dict[str, Any]:
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": len(resources) if total is None else total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


@bp.get("/ServiceProviderConfig")
def service_provider_config() -> Response:
    return _answer(spc_document(_state().base_url))


@bp.get("/ResourceTypes")
def resource_types() -> Response:
    return _answer(_list(resource_type_documents(_state().base_url)))


@bp.get("/ResourceTypes/<name>")
def resource_type(name: str) -> Response:
    kind = KINDS.get(name)
    if kind is None:
        raise NotFound(f"no resource type {name}")
    return _answer(kind.document(_state().base_url))


@bp.get("/Schemas")
def schemas() -> Response:
    return _answer(_list(schema_documents(_state().base_url)))


@bp.get("/Schemas/<urn>")
def schema(urn: str) -> Response:
    found = SCHEMAS.get(urn)
    if found is None:
        raise NotFound(f"no schema {urn}")
    return _answer(schema_document(found, _state().base_url))


# --- resources ------------------------------------------------------------------------------


def _int(raw: Any, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise BadRequest(f"{name} must be an integer", "invalidValue")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and _INTEGER.match(raw.strip()):
        return int(raw.strip())
    raise BadRequest(f"{name} must be an integer", "invalidValue")


def _search(kind: ResourceKind, params: dict[str, Any]) -> Response:
    sort_order = params.get("sortOrder") or "ascending"
    if sort_order not in ("ascending", "descending"):
        raise BadRequest("sortOrder is ascending or descending", "invalidValue")
    filter_text = params.get("filter")
    if filter_text is not None and not isinstance(filter_text, str):
        raise BadRequest("filter must be a string", "invalidFilter")
    sort_by = params.get("sortBy")
    if sort_by is not None and not isinstance(sort_by, str):
        raise BadRequest("sortBy must be a string", "invalidValue")
    attributes, excluded = (
        _names(params.get("attributes")),
        _names(params.get("excludedAttributes")),
    )
    query = Query(
        filter=filter_text,
        sort_by=sort_by or None,
        sort_order=sort_order,
        start_index=_int(params.get("startIndex"), "startIndex") or 1,
        count=_int(params.get("count"), "count"),
    )
    page = _state().service.query(
        kind, _client(), query, related=_wants_related(kind, attributes, excluded)
    )
    resources = [_project(kind, r, attributes, excluded) for r in page.resources]
    return _answer(_list(resources, page.total, page.start_index))


def _root_search(params: dict[str, Any]) -> Response:
    """``POST /.search`` over every resource type (RFC 7644 §3.4.3): Users then Groups, each
    filtered and sorted, paged together (the page never exceeds ``maxResults``)."""
    start = _int(params.get("startIndex"), "startIndex") or 1
    count = _int(params.get("count"), "count")
    wanted = MAX_RESULTS if count is None else min(max(count, 0), MAX_RESULTS)
    merged: list[dict[str, Any]] = []
    total = 0
    for kind in (USER_KIND, GROUP_KIND):
        one = {**params, "startIndex": 1, "count": MAX_RESULTS}
        answer = json.loads(_search(kind, one).get_data())
        total += answer["totalResults"]
        merged.extend(answer["Resources"])
    page = merged[max(start, 1) - 1 : max(start, 1) - 1 + wanted]
    return _answer(_list(page, total, max(start, 1)))


def _single(kind: ResourceKind, doc: dict[str, Any], status: int = 200) -> Response:
    attributes = _names(request.args.get("attributes"))
    excluded = _names(request.args.get("excludedAttributes"))
    headers = {"ETag": doc["meta"]["version"]}
    if status == 201:
        headers["Location"] = doc["meta"]["location"]
    return _answer(_project(kind, doc, attributes, excluded), status, headers)


def _collection(kind: ResourceKind) -> Response:
    if request.method == "GET":
        return _search(kind, request.args.to_dict())
    return _single(kind, _state().service.create(kind, _client(), _object_body()), 201)


def _search_post(kind: ResourceKind) -> Response:
    body = _object_body()
    schemas_listed = body.get("schemas")
    if not isinstance(schemas_listed, list) or SEARCH_REQUEST not in schemas_listed:
        raise BadRequest(f"schemas must list {SEARCH_REQUEST}", "invalidSyntax")
    return _search(kind, body)


def _item(kind: ResourceKind, resource_id: str) -> Response:
    service, client = _state().service, _client()
    if_match = request.headers.get("If-Match")
    if request.method == "GET":
        doc = service.get(kind, client, resource_id)
        none_match = request.headers.get("If-None-Match")
        if none_match and header_matches(none_match, int(doc["meta"]["version"][3:-1])):
            return Response(status=304, headers={"ETag": doc["meta"]["version"]})
        return _single(kind, doc)
    if request.method == "PUT":
        return _single(kind, service.replace(kind, client, resource_id, _object_body(), if_match))
    if request.method == "PATCH":
        return _single(kind, service.patch(kind, client, resource_id, _body(), if_match))
    service.delete(kind, client, resource_id, if_match)
    return Response(status=204)


@bp.post("/.search")
def root_search() -> Response:
    body = _object_body()
    schemas_listed = body.get("schemas")
    if not isinstance(schemas_listed, list) or SEARCH_REQUEST not in schemas_listed:
        raise BadRequest(f"schemas must list {SEARCH_REQUEST}", "invalidSyntax")
    return _root_search(body)


@bp.route("/Users", methods=["GET", "POST"])
def users() -> Response:
    return _collection(USER_KIND)


@bp.post("/Users/.search")
def users_search() -> Response:
    return _search_post(USER_KIND)


@bp.route("/Users/<resource_id>", methods=["GET", "PUT", "PATCH", "DELETE"])
def user(resource_id: str) -> Response:
    return _item(USER_KIND, resource_id)


@bp.route("/Groups", methods=["GET", "POST"])
def groups() -> Response:
    return _collection(GROUP_KIND)


@bp.post("/Groups/.search")
def groups_search() -> Response:
    return _search_post(GROUP_KIND)


@bp.route("/Groups/<resource_id>", methods=["GET", "PUT", "PATCH", "DELETE"])
def group(resource_id: str) -> Response:
    return _item(GROUP_KIND, resource_id)


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str) -> Response:
    parts = rest.split("/")
    fixed = parts[0] in _ENDPOINTS and (len(parts) == 1 or parts[0] not in ("Users", "Groups"))
    if fixed or (len(parts) == 2 and parts[0] in ("Users", "Groups")):
        raise MethodNotAllowed(f"{request.method} is not allowed on {parts[0]}")
    raise NotFound("no such SCIM endpoint")


_ENDPOINTS = frozenset({"ServiceProviderConfig", "ResourceTypes", "Schemas", "Users", "Groups"})


unknown.openapi_exempt = "catch-all: SCIM 404 for unknown endpoints"  # type: ignore[attr-defined]
