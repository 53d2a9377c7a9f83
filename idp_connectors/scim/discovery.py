"""The discovery documents (RFC 7644 §4): ServiceProviderConfig, ResourceTypes, Schemas."""

from __future__ import annotations

from typing import Any

from idp_connectors.scim.resources import MAX_RESULTS
from idp_connectors.scim.schemas import KINDS, SCHEMAS, SP_CONFIG, schema_document

__all__ = ["service_provider_config", "resource_types", "schemas", "DOCS_URL"]

DOCS_URL = "https://datatracker.ietf.org/doc/html/rfc7644"


def service_provider_config(base: str) -> dict[str, Any]:
    return {
        "schemas": [SP_CONFIG],
        "documentationUri": DOCS_URL,
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A per-client bearer token (Authorization: Bearer <token>)",
                "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base}/ServiceProviderConfig",
        },
    }


def resource_types(base: str) -> list[dict[str, Any]]:
    return [kind.document(base) for kind in KINDS.values()]


def schemas(base: str) -> list[dict[str, Any]]:
    return [schema_document(s, base) for s in SCHEMAS.values()]
