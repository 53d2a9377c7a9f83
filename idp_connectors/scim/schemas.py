"""The SCIM 2.0 schemas this server serves (RFC 7643 §4, §8.7.1) and look-ups on them.

The schema definitions are data: the same :class:`Attr` trees answer ``GET /Schemas``, drive
input validation (:mod:`idp_connectors.scim.validate`), the case rules of filters
(``caseExact``) and the mutability checks of PATCH. Three schemas: the core User (without the
attributes we cannot honour: ``ims``, ``photos``, ``x509Certificates``), the enterprise User
extension, and the core Group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Attr",
    "USER",
    "ENTERPRISE_USER",
    "GROUP",
    "PATCH_OP",
    "LIST_RESPONSE",
    "SEARCH_REQUEST",
    "ERROR",
    "SP_CONFIG",
    "RESOURCE_TYPE",
    "SCHEMA",
    "Schema",
    "ResourceKind",
    "USER_KIND",
    "GROUP_KIND",
    "KINDS",
    "schema_document",
]

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SP_CONFIG = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"


@dataclass(frozen=True)
class Attr:
    """One attribute definition (RFC 7643 §7)."""

    name: str
    type: str = "string"  # string boolean decimal integer dateTime reference complex
    multi: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"  # readOnly readWrite immutable writeOnly
    returned: str = "default"  # always never default request
    uniqueness: str = "none"
    canonical: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    sub: tuple[Attr, ...] = ()
    description: str = ""

    def child(self, name: str) -> Attr | None:
        low = name.lower()
        return next((a for a in self.sub if a.name.lower() == low), None)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi,
            "description": self.description or self.name,
            "required": self.required,
            "mutability": self.mutability,
            "returned": self.returned,
        }
        if self.type in ("string", "reference", "binary"):
            doc["caseExact"] = self.case_exact
        if self.type != "complex" and self.type != "boolean":
            doc["uniqueness"] = self.uniqueness
        if self.canonical:
            doc["canonicalValues"] = list(self.canonical)
        if self.reference_types:
            doc["referenceTypes"] = list(self.reference_types)
        if self.sub:
            doc["subAttributes"] = [a.document() for a in self.sub]
        return doc


def _s(name: str, **kw: Any) -> Attr:
    return Attr(name, **kw)


def _multi(name: str, value_type: str = "string", *, extra: tuple[Attr, ...] = ()) -> Attr:
    """A multi-valued complex attribute of the emails/phoneNumbers kind (RFC 7643 §2.4)."""
    return Attr(
        name,
        type="complex",
        multi=True,
        sub=(
            _s("value", type=value_type),
            _s("display"),
            _s("type", canonical=("work", "home", "other")),
            _s("primary", type="boolean"),
            *extra,
        ),
    )


@dataclass(frozen=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attr, ...]

    def attr(self, name: str) -> Attr | None:
        low = name.lower()
        return next((a for a in self.attributes if a.name.lower() == low), None)


_USER_ATTRS = (
    _s("userName", required=True, uniqueness="server", description="Unique login name"),
    Attr(
        "name",
        type="complex",
        sub=(
            _s("formatted"),
            _s("familyName"),
            _s("givenName"),
            _s("middleName"),
            _s("honorificPrefix"),
            _s("honorificSuffix"),
        ),
    ),
    _s("displayName"),
    _s("nickName"),
    _s("profileUrl", type="reference", reference_types=("external",)),
    _s("title"),
    _s("userType"),
    _s("preferredLanguage"),
    _s("locale"),
    _s("timezone"),
    _s("active", type="boolean"),
    _s("password", mutability="writeOnly", returned="never", description="Never stored"),
    _multi("emails"),
    _multi("phoneNumbers"),
    Attr(
        "addresses",
        type="complex",
        multi=True,
        sub=(
            _s("formatted"),
            _s("streetAddress"),
            _s("locality"),
            _s("region"),
            _s("postalCode"),
            _s("country"),
            _s("type", canonical=("work", "home", "other")),
            _s("primary", type="boolean"),
        ),
    ),
    Attr(
        "groups",
        type="complex",
        multi=True,
        mutability="readOnly",
        sub=(
            _s("value", mutability="readOnly"),
            _s("$ref", type="reference", reference_types=("Group",), mutability="readOnly"),
            _s("display", mutability="readOnly"),
            _s("type", canonical=("direct", "indirect"), mutability="readOnly"),
        ),
    ),
    Attr(
        "roles",
        type="complex",
        multi=True,
        sub=(_s("value"), _s("display"), _s("type"), _s("primary", type="boolean")),
    ),
    Attr(
        "entitlements",
        type="complex",
        multi=True,
        sub=(_s("value"), _s("display"), _s("type"), _s("primary", type="boolean")),
    ),
)

_ENTERPRISE_ATTRS = (
    _s("employeeNumber"),
    _s("costCenter"),
    _s("organization"),
    _s("division"),
    _s("department"),
    Attr(
        "manager",
        type="complex",
        sub=(
            _s("value"),
            _s("$ref", type="reference", reference_types=("User",)),
            _s("displayName", mutability="readOnly"),
        ),
    ),
)

_GROUP_ATTRS = (
    _s("displayName", required=True, uniqueness="server"),
    Attr(
        "members",
        type="complex",
        multi=True,
        sub=(
            _s("value", mutability="immutable"),
            _s("$ref", type="reference", reference_types=("User", "Group"), mutability="immutable"),
            _s("type", canonical=("User", "Group"), mutability="immutable"),
        ),
    ),
)

SCHEMAS: dict[str, Schema] = {
    USER: Schema(USER, "User", "User Account", _USER_ATTRS),
    ENTERPRISE_USER: Schema(
        ENTERPRISE_USER, "EnterpriseUser", "Enterprise User", _ENTERPRISE_ATTRS
    ),
    GROUP: Schema(GROUP, "Group", "Group", _GROUP_ATTRS),
}

#: Attributes common to every resource (RFC 7643 §3.1), for look-ups (not in /Schemas).
COMMON: tuple[Attr, ...] = (
    _s("id", mutability="readOnly", returned="always", case_exact=True, uniqueness="server"),
    _s("externalId", case_exact=True),
    Attr(
        "meta",
        type="complex",
        mutability="readOnly",
        sub=(
            _s("resourceType", mutability="readOnly", case_exact=True),
            _s("created", type="dateTime", mutability="readOnly"),
            _s("lastModified", type="dateTime", mutability="readOnly"),
            _s("location", type="reference", mutability="readOnly", case_exact=True),
            _s("version", mutability="readOnly", case_exact=True),
        ),
    ),
)


@dataclass(frozen=True)
class ResourceKind:
    """A resource type (RFC 7643 §6): its endpoint, core schema and extensions."""

    name: str  # User | Group
    endpoint: str  # /Users | /Groups
    core: Schema
    extensions: tuple[Schema, ...] = field(default=())
    name_attr: str = "userName"  # the unique attribute stored as the name key

    @property
    def schema_ids(self) -> tuple[str, ...]:
        return (self.core.id, *(e.id for e in self.extensions))

    def extension(self, urn: str) -> Schema | None:
        low = urn.lower()
        return next((e for e in self.extensions if e.id.lower() == low), None)

    def top(self, name: str) -> Attr | None:
        """A core or common attribute by (case-insensitive) name."""
        low = name.lower()
        found = self.core.attr(name)
        return found or next((a for a in COMMON if a.name.lower() == low), None)

    def document(self, base: str) -> dict[str, Any]:
        return {
            "schemas": [RESOURCE_TYPE],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.core.description,
            "schema": self.core.id,
            "schemaExtensions": [{"schema": e.id, "required": False} for e in self.extensions],
            "meta": {
                "resourceType": "ResourceType",
                "location": f"{base}/ResourceTypes/{self.name}",
            },
        }


USER_KIND = ResourceKind("User", "/Users", SCHEMAS[USER], (SCHEMAS[ENTERPRISE_USER],))
GROUP_KIND = ResourceKind("Group", "/Groups", SCHEMAS[GROUP], name_attr="displayName")
KINDS = {"User": USER_KIND, "Group": GROUP_KIND}


def schema_document(schema: Schema, base: str) -> dict[str, Any]:
    """The ``/Schemas/<urn>`` representation (RFC 7643 §7)."""
    return {
        "schemas": [SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": [a.document() for a in schema.attributes],
        "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{schema.id}"},
    }
