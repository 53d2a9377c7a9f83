"""SCIM resource storage: the SCIM 2.0 view of mirror users and groups (RFC 7643).

The directory mirror (:mod:`mdm_core.storage.directory`) holds what access decisions read
(username, email, active, memberships); a :class:`ScimResource` holds the rest of what a SCIM
client sent (name, emails, enterprise attributes, ...) as a JSON document, the resource
version that makes its weak ETag, and its ``meta`` times. The SCIM server in
``idp_connectors.scim`` writes both in one unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

__all__ = ["ScimResource", "ScimResourceStore"]


@dataclass(frozen=True, slots=True)
class ScimResource:
    resource_type: str  # "User" | "Group"
    id: str
    client: str  # the SCIM client that created it (only it sees the resource)
    name_key: str  # lower-cased userName / displayName: unique per resource type
    external_id: str | None
    version: int  # starts at 1, +1 on every change: the weak ETag W/"<version>"
    created: datetime
    last_modified: datetime
    document: dict[str, Any]  # attributes other than id, meta and (Group) members


class ScimResourceStore(Protocol):
    def get(self, resource_type: str, resource_id: str) -> ScimResource | None:
        """The resource, or ``None`` for an unknown id."""
        ...

    def find_by_name(self, resource_type: str, name_key: str) -> ScimResource | None:
        """The resource of this type whose ``name_key`` equals ``name_key``, or ``None``."""
        ...

    def put(self, resource: ScimResource, *, expected_version: int | None) -> None:
        """Insert (``expected_version`` ``None``) or replace the resource.

        A replace only happens when the stored version equals ``expected_version``: otherwise
        (a concurrent writer won, or the id is unknown) it raises
        :class:`mdm_core.domain.errors.Conflict` and writes nothing. An insert whose id or
        ``name_key`` is taken also raises ``Conflict``.
        """
        ...

    def delete(self, resource_type: str, resource_id: str) -> bool:
        """Remove the resource; ``False`` for an unknown id."""
        ...

    def list(self, resource_type: str, client: str) -> list[ScimResource]:
        """Every resource of this type owned by ``client``, sorted by id; ``[]`` if none."""
        ...
