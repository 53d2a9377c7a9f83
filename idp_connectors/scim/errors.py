"""SCIM errors (RFC 7644 §3.12): each maps to an HTTP status and, for 400s, a ``scimType``.

Tree::

    ScimError (status, scimType, detail)
    ├── BadRequest 400 ── invalidFilter | invalidSyntax | invalidPath | noTarget
    │                     | invalidValue | mutability | tooMany | invalidVers
    ├── Unauthorized 401
    ├── Forbidden 403
    ├── NotFound 404
    ├── MethodNotAllowed 405
    ├── Uniqueness 409 (scimType uniqueness)
    ├── PreconditionFailed 412 (If-Match does not match the resource version)
    ├── PayloadTooLarge 413
    ├── TooManyRequests 429
    └── Unavailable 503

The response body is the SCIM error message; ``detail`` never echoes a secret.
"""

from __future__ import annotations

from typing import Any

from idp_connectors.scim.schemas import ERROR

__all__ = [
    "ScimError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "Uniqueness",
    "PreconditionFailed",
    "PayloadTooLarge",
    "TooManyRequests",
    "Unavailable",
]


class ScimError(Exception):
    status = 500
    scim_type: str | None = None

    def __init__(self, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if scim_type is not None:
            self.scim_type = scim_type

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schemas": [ERROR],
            "status": str(self.status),
            "detail": self.detail,
        }
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


class BadRequest(ScimError):
    status = 400
    scim_type = "invalidValue"


class Unauthorized(ScimError):
    status = 401


class Forbidden(ScimError):
    status = 403


class NotFound(ScimError):
    status = 404


class MethodNotAllowed(ScimError):
    status = 405


class Uniqueness(ScimError):
    status = 409
    scim_type = "uniqueness"


class PreconditionFailed(ScimError):
    status = 412


class PayloadTooLarge(ScimError):
    status = 413


class TooManyRequests(ScimError):
    status = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(ScimError):
    status = 503
