"""The SCIM resource service: Users and Groups over the directory mirror (RFC 7643, 7644 §3).

Every write is one unit of work holding all of: the SCIM record
(:mod:`mdm_core.storage.scim`: document, version, meta times), the mirror record the access
plane reads (``directory_users`` / ``directory_groups``, source ``scim:<client>``), the
membership changes with their ``directory.membership_changed`` events, the account events
(``active`` true -> false: ``directory.account_disabled`` and credential revocation; DELETE:
``directory.account_deleted``, see :mod:`mdm_core.directory.accounts`), and one audit record
naming the client. A refused request raises a :class:`~idp_connectors.scim.errors.ScimError`
before the commit, so it changes nothing.

A client sees only the resources it created (another client's id is ``404``); names
(``userName``, group ``displayName``) are unique across the whole mirror, case-insensitively.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from idp_connectors.scim.errors import BadRequest, NotFound, PreconditionFailed, Uniqueness
from idp_connectors.scim.etag import etag, header_matches
from idp_connectors.scim.filter import Compare, Filter, attr_def, matches, parse_attr_path, resolve
from idp_connectors.scim.filter import parse as parse_filter
from idp_connectors.scim.patch import apply as apply_patch
from idp_connectors.scim.schemas import GROUP_KIND, USER_KIND, ResourceKind
from idp_connectors.scim.validate import check_immutable, check_required, normalize
from mdm_core.directory.accounts import delete_account, disable_account
from mdm_core.directory.mirror import GroupChangeTracker, add_membership, remove_membership
from mdm_core.directory.precedence import Override, SourceOfTruth
from mdm_core.directory.sync import record_claims, write_resolved
from mdm_core.domain.errors import Conflict
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.scim import ScimResource
from mdm_core.storage.uow import Storage, UnitOfWork

__all__ = ["ScimService", "Query", "Page", "MAX_RESULTS", "MAX_NAME"]

log = logging.getLogger(__name__)

#: The most resources one list answer holds (``ServiceProviderConfig.filter.maxResults``).
MAX_RESULTS = 200
#: Longest userName / displayName (the mirror's column width).
MAX_NAME = 256


@dataclass(frozen=True)
class Query:
    filter: str | None = None
    sort_by: str | None = None
    sort_order: str = "ascending"
    start_index: int = 1
    count: int | None = None


@dataclass(frozen=True)
class Page:
    total: int
    start_index: int
    resources: list[dict[str, Any]]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ScimService:
    """SCIM operations for one server; ``base_url`` is the ``/scim/v2`` URL (locations)."""

    def __init__(
        self,
        storage: Storage,
        base_url: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        source_of_truth: SourceOfTruth | None = None,
    ) -> None:
        if storage is None:
            raise ValueError("ScimService needs a storage")
        self.storage = storage
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        #: ``directory.source_of_truth`` when configured: a user another source also holds
        #: (a *shared* user) is written through the precedence (module docstring).
        self.truth = source_of_truth if source_of_truth and source_of_truth.configured else None

    # --- representation ---------------------------------------------------------------

    def _working(self, uow: UnitOfWork, kind: ResourceKind, record: ScimResource) -> dict[str, Any]:
        doc = dict(record.document)
        if record.external_id is not None:
            doc["externalId"] = record.external_id
        if kind is GROUP_KIND:
            members = doc.pop("members", None)
            if members is None:  # written before the document kept the client's members
                members = [
                    {
                        "value": m.member_id,
                        "type": "User" if m.member_kind is MemberKind.USER else "Group",
                    }
                    for m in uow.memberships.members([record.id])
                ]
            if members:
                doc["members"] = list(members)
        return doc

    def _render(
        self, uow: UnitOfWork, kind: ResourceKind, record: ScimResource, *, related: bool = True
    ) -> dict[str, Any]:
        doc = (
            self._working(uow, kind, record)
            if related or kind is USER_KIND
            else {k: v for k, v in record.document.items() if k != "members"}
        )
        if not related and record.external_id is not None:
            doc["externalId"] = record.external_id
        schemas = [kind.core.id] + [e.id for e in kind.extensions if e.id in doc]
        out: dict[str, Any] = {"schemas": schemas, "id": record.id, **doc}
        if kind is GROUP_KIND and "members" in doc:
            out["members"] = [self._member(uow, m) for m in doc["members"]]
        if kind is USER_KIND and related:
            groups = self._groups(uow, record)
            if groups:
                out["groups"] = groups
        out["meta"] = {
            "resourceType": kind.name,
            "created": _iso(record.created),
            "lastModified": _iso(record.last_modified),
            "location": f"{self.base_url}{kind.endpoint}/{record.id}",
            "version": etag(record.version),
        }
        return out

    def _member(self, uow: UnitOfWork, member: dict[str, Any]) -> dict[str, Any]:
        kind = USER_KIND if member.get("type") == "User" else GROUP_KIND
        return {  # no display: RFC 7643 §8.7.1 gives members value, $ref and type only
            "value": member["value"],
            "type": kind.name,
            "$ref": f"{self.base_url}{kind.endpoint}/{member['value']}",
        }

    def _groups(self, uow: UnitOfWork, record: ScimResource) -> list[dict[str, Any]]:
        out = []
        for group_id in self._scim_groups_of(uow, record):
            group = uow.scim_resources.get("Group", group_id)
            if group is None or group.client != record.client:
                continue
            out.append(
                {
                    "value": group.id,
                    "$ref": f"{self.base_url}/Groups/{group.id}",
                    "display": str(group.document.get("displayName", "")),
                    "type": "direct",
                }
            )
        return out

    def _scim_groups_of(self, uow: UnitOfWork, record: ScimResource) -> list[str]:
        """Ids of the groups the user is directly in, as its SCIM client wrote them: the
        mirror's memberships, or, for a shared user, the client's own claims."""
        source = f"scim:{record.client}"
        if self.truth is not None and self._shared(uow.directory_users.get(record.id), source):
            names = uow.source_claims.for_user(record.id).get(source, {}).get("groups", [])
            found = [uow.scim_resources.find_by_name("Group", str(n).lower()) for n in names]
            return sorted(g.id for g in found if g is not None)
        return [m.group_id for m in uow.memberships.parents(MemberKind.USER, [record.id])]

    # --- reads ------------------------------------------------------------------------

    def _owned(
        self, uow: UnitOfWork, kind: ResourceKind, client: str, resource_id: str
    ) -> ScimResource:
        record = uow.scim_resources.get(kind.name, resource_id)
        if record is None or record.client != client:
            raise NotFound(f"{kind.name} {resource_id} not found")
        return record

    def get(self, kind: ResourceKind, client: str, resource_id: str) -> dict[str, Any]:
        with self.storage.unit_of_work() as uow:
            return self._render(uow, kind, self._owned(uow, kind, client, resource_id))

    def query(self, kind: ResourceKind, client: str, query: Query, *, related: bool = True) -> Page:
        """Filter, sort and page (RFC 7644 §3.4.2); ``related=False`` leaves out members /
        groups when neither the filter nor the sort needs them."""
        node = parse_filter(query.filter) if query.filter is not None else None
        sort_path = parse_attr_path(query.sort_by) if query.sort_by else None
        if sort_path is not None and _unknown(kind, sort_path):
            raise BadRequest(f"cannot sort by {query.sort_by}", "invalidValue")
        needs_related = related or _mentions_related(query)
        with self.storage.unit_of_work() as uow:
            records = self._candidates(uow, kind, client, node)
            docs = [self._render(uow, kind, r, related=needs_related) for r in records]
            if node is not None:
                docs = [d for d in docs if matches(node, d, kind)]
            if sort_path is not None:
                docs = _sorted(docs, kind, sort_path, descending=query.sort_order == "descending")
            start = max(query.start_index, 1)
            count = MAX_RESULTS if query.count is None else min(max(query.count, 0), MAX_RESULTS)
            page = docs[start - 1 : start - 1 + count]
            if needs_related and not related:
                page = [_without_related(kind, d) for d in page]
            return Page(total=len(docs), start_index=start, resources=page)

    def _candidates(
        self, uow: UnitOfWork, kind: ResourceKind, client: str, node: Filter | None
    ) -> list[ScimResource]:
        # userName eq "x" / displayName eq "x" (what Okta and Entra send before a create):
        # one indexed look-up; the filter still runs over the result.
        if (
            isinstance(node, Compare)
            and node.op == "eq"
            and isinstance(node.value, str)
            and node.path.sub is None
            and node.path.attr.lower() == kind.name_attr.lower()
            and (node.path.urn is None or node.path.urn.lower() == kind.core.id.lower())
        ):
            found = uow.scim_resources.find_by_name(kind.name, node.value.lower())
            return [found] if found is not None and found.client == client else []
        return uow.scim_resources.list(kind.name, client)

    # --- writes -----------------------------------------------------------------------

    def create(self, kind: ResourceKind, client: str, body: dict[str, Any]) -> dict[str, Any]:
        _check_schemas(kind, body)
        doc = normalize(kind, body)
        check_required(kind, doc)
        at = self.clock()
        record_id = str(uuid.uuid4())
        with self.storage.unit_of_work() as uow:
            linked = self._link(uow, kind, client, doc)
            record_id = linked or record_id
            record = self._record(kind, client, record_id, doc, version=1, created=at, at=at)
            if uow.scim_resources.find_by_name(kind.name, record.name_key) is not None:
                raise Uniqueness(f"{kind.name_attr} is already taken")
            record, overrides = self._mirror(uow, kind, client, record, doc, before=None, at=at)
            self._store(uow, record, expected=None)
            detail: dict[str, Any] = {"version": 1}
            if linked is not None:
                detail["linked"] = linked
            uow.audit.record(
                f"scim:{client}",
                f"scim.{kind.name.lower()}.create",
                _subject(kind, record_id),
                "ok",
                _with_overrides(detail, overrides),
                at=at,
            )
            return self._render(uow, kind, record)

    def replace(
        self,
        kind: ResourceKind,
        client: str,
        resource_id: str,
        body: dict[str, Any],
        if_match: str | None,
    ) -> dict[str, Any]:
        _check_schemas(kind, body)
        if "id" in body and body["id"] != resource_id:
            raise BadRequest("id does not match the resource", "mutability")
        new_doc = normalize(kind, body)
        check_required(kind, new_doc)
        return self._update(kind, client, resource_id, if_match, "replace", lambda old: new_doc)

    def patch(
        self, kind: ResourceKind, client: str, resource_id: str, body: Any, if_match: str | None
    ) -> dict[str, Any]:
        def change(old: dict[str, Any]) -> dict[str, Any]:
            patched = apply_patch(kind, old, body, resource_id=resource_id)
            doc = normalize(kind, patched)
            check_required(kind, doc)
            return doc

        return self._update(kind, client, resource_id, if_match, "patch", change)

    def _update(
        self,
        kind: ResourceKind,
        client: str,
        resource_id: str,
        if_match: str | None,
        action: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        at = self.clock()
        with self.storage.unit_of_work() as uow:
            before = self._owned(uow, kind, client, resource_id)
            if if_match is not None and not header_matches(if_match, before.version):
                raise PreconditionFailed(f"the {kind.name} is at {etag(before.version)}")
            old = self._working(uow, kind, before)
            new = change(old)
            check_immutable(kind, old, new)
            if new == old:
                return self._render(uow, kind, before)
            record = self._record(
                kind,
                client,
                resource_id,
                new,
                version=before.version + 1,
                created=before.created,
                at=at,
            )
            if record.name_key != before.name_key:
                holder = uow.scim_resources.find_by_name(kind.name, record.name_key)
                if holder is not None and holder.id != resource_id:
                    raise Uniqueness(f"{kind.name_attr} is already taken")
            overrides: list[Override] = []
            if _mirrored(kind, old) != _mirrored(kind, new):  # else the mirror is unchanged
                record, overrides = self._mirror(uow, kind, client, record, new, before=old, at=at)
            elif kind is GROUP_KIND:
                record = _with_members(record, old.get("members", []))
            self._store(uow, record, expected=before.version)
            uow.audit.record(
                f"scim:{client}",
                f"scim.{kind.name.lower()}.{action}",
                _subject(kind, resource_id),
                "ok",
                _with_overrides(
                    {"version": record.version, "attributes": sorted(_changed(old, new))},
                    overrides,
                ),
                at=at,
            )
            return self._render(uow, kind, record)

    def delete(
        self, kind: ResourceKind, client: str, resource_id: str, if_match: str | None
    ) -> None:
        at = self.clock()
        actor = f"scim:{client}"
        with self.storage.unit_of_work() as uow:
            record = self._owned(uow, kind, client, resource_id)
            if if_match is not None and not header_matches(if_match, record.version):
                raise PreconditionFailed(f"the {kind.name} is at {etag(record.version)}")
            overrides: list[Override] = []
            if kind is USER_KIND:
                self._forget_member(uow, client, resource_id, at=at)
                existing = uow.directory_users.get(resource_id)
                if self._shared(existing, actor):
                    assert existing is not None
                    overrides = self._withdraw(uow, client, existing, at=at)
                else:
                    delete_account(uow, resource_id, at=at, actor=actor, source=actor)
            else:
                # Members lose the group (and what it nests in): one user_groups_changed event
                # per user whose effective groups change, so their devices converge.
                tracker = GroupChangeTracker(uow, cause=actor)
                name = str(record.document.get("displayName", ""))
                shared = self._shared_members(
                    uow,
                    actor,
                    {m.member_id for m in uow.memberships.members([resource_id])}
                    | {
                        str(m.get("value"))
                        for m in self._working(uow, kind, record).get("members", [])
                        if m.get("type") == "User"
                    },
                )
                for user_id in sorted(shared):
                    overrides += self._claim_groups(
                        uow, client, user_id, drop=name, add=None, at=at, tracker=tracker
                    )
                for m in uow.memberships.members([resource_id]):
                    remove_membership(uow, m, at=at, tracker=tracker)
                for m in uow.memberships.parents(MemberKind.GROUP, [resource_id]):
                    remove_membership(uow, m, at=at, tracker=tracker)
                uow.directory_groups.delete(resource_id)
                tracker.flush(at=at)
            uow.scim_resources.delete(kind.name, resource_id)
            uow.audit.record(
                actor,
                f"scim.{kind.name.lower()}.delete",
                _subject(kind, resource_id),
                "ok",
                _with_overrides({}, overrides),
                at=at,
            )

    # --- helpers ----------------------------------------------------------------------

    def _record(
        self,
        kind: ResourceKind,
        client: str,
        resource_id: str,
        doc: dict[str, Any],
        *,
        version: int,
        created: datetime,
        at: datetime,
    ) -> ScimResource:
        name = doc.get(kind.name_attr)
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(f"{kind.name_attr} is required", "invalidValue")
        if len(name) > MAX_NAME or len(name.lower()) > MAX_NAME:
            raise BadRequest(
                f"{kind.name_attr} is longer than {MAX_NAME} characters", "invalidValue"
            )
        external_id = doc.get("externalId")
        if external_id is not None and len(external_id) > 256:
            raise BadRequest("externalId is longer than 256 characters", "invalidValue")
        stored = {k: v for k, v in doc.items() if k not in ("externalId", "members")}
        return ScimResource(
            resource_type=kind.name,
            id=resource_id,
            client=client,
            name_key=name.lower(),
            external_id=external_id,
            version=version,
            created=created,
            last_modified=at,
            document=stored,
        )

    def _store(self, uow: UnitOfWork, record: ScimResource, *, expected: int | None) -> None:
        try:
            uow.scim_resources.put(record, expected_version=expected)
        except Conflict as exc:
            if expected is None:
                raise Uniqueness(str(exc)) from exc
            raise PreconditionFailed(f"the {record.resource_type} changed meanwhile") from exc

    def _mirror(
        self,
        uow: UnitOfWork,
        kind: ResourceKind,
        client: str,
        record: ScimResource,
        doc: dict[str, Any],
        *,
        before: dict[str, Any] | None,
        at: datetime,
    ) -> tuple[ScimResource, list[Override]]:
        """Write what the mirror holds of ``doc``; the record to store (a group's keeps the
        client's members) and what the precedence overrode."""
        source = f"scim:{client}"
        if kind is USER_KIND:
            active = doc.get("active", True) is not False
            existing = uow.directory_users.get(record.id)
            if self._shared(existing, source):
                assert existing is not None
                return record, self._write_shared(uow, client, existing, doc, at=at)
            disabling = existing is not None and existing.active and not active
            try:
                uow.directory_users.upsert(
                    DirectoryUser(
                        id=record.id,
                        username=doc["userName"],
                        active=True if disabling else active,
                        source=source,
                        updated_at=at,
                        email=_email(doc),
                        display_name=_display(doc),
                        external_id=record.external_id,
                    )
                )
            except Conflict as exc:
                raise Uniqueness("userName is already taken") from exc
            if disabling:
                disable_account(uow, record.id, at=at, actor=source, source=source)
            return record, []
        try:
            uow.directory_groups.upsert(
                DirectoryGroup(
                    id=record.id,
                    name=doc["displayName"],
                    source=source,
                    updated_at=at,
                    external_id=record.external_id,
                )
            )
        except Conflict as exc:
            raise Uniqueness("displayName is already taken") from exc
        wanted = {self._membership(uow, client, record.id, m) for m in doc.get("members", [])}
        current = set(uow.memberships.members([record.id])) if before is not None else set()
        # One user_groups_changed event per user whose effective groups change (the access
        # read model and device convergence follow it).
        tracker = GroupChangeTracker(uow, cause=source)
        overrides: list[Override] = []
        if self.truth is not None:
            # A shared user's groups are its SCIM claims, resolved with the other sources'.
            old_name = before.get("displayName") if before is not None else None
            was = {
                str(m.get("value"))
                for m in (before or {}).get("members", [])
                if m.get("type") == "User"
            }
            now = {m.member_id for m in wanted if m.member_kind is MemberKind.USER}
            renamed = old_name is not None and old_name != doc["displayName"]
            candidates = {m.member_id for m in current ^ wanted if m.member_kind is MemberKind.USER}
            candidates |= was ^ now
            if renamed:
                candidates |= was | now
            shared = self._shared_members(uow, source, candidates)
            for user_id in sorted(shared):
                if user_id in now or user_id in was:
                    overrides += self._claim_groups(
                        uow,
                        client,
                        user_id,
                        drop=old_name if isinstance(old_name, str) else None,
                        add=doc["displayName"] if user_id in now else None,
                        at=at,
                        tracker=tracker,
                    )
            current = {m for m in current if m.member_id not in shared}
            wanted_mirror = {m for m in wanted if m.member_id not in shared}
        else:
            wanted_mirror = wanted
        for m in sorted(current - wanted_mirror):
            remove_membership(uow, m, at=at, tracker=tracker)
        for m in sorted(wanted_mirror - current):
            add_membership(uow, m, at=at, tracker=tracker)
        tracker.flush(at=at)
        return _with_members(record, _member_list(wanted)), overrides

    # --- the source of truth (shared users) ---------------------------------------------

    def _shared(self, existing: DirectoryUser | None, source: str) -> bool:
        """A user another source holds too: its record was created by another source (a
        SCIM client's own users keep the direct path)."""
        return self.truth is not None and existing is not None and existing.source != source

    def _shared_members(self, uow: UnitOfWork, source: str, user_ids: Collection[str]) -> set[str]:
        return {u for u in user_ids if self._shared(uow.directory_users.get(u), source)}

    def _link(
        self, uow: UnitOfWork, kind: ResourceKind, client: str, doc: dict[str, Any]
    ) -> str | None:
        """With a source of truth, a new SCIM user whose userName names a user another
        source (users file, import, LDAP) already holds becomes that user (its id), so the
        precedence decides between them; ``None``: a new user. Only when the configuration
        lists ``scim`` (or this client's source) for some attribute: a source of truth that
        names no SCIM source gives SCIM no claim on another source's users."""
        if self.truth is None or kind is not USER_KIND:
            return None
        source = f"scim:{client}"
        if not any("scim" in sources or source in sources for sources in self.truth.order.values()):
            return None  # the configuration gives SCIM no say: 409 as before
        holder = uow.directory_users.find_by_username(str(doc.get("userName", "")))
        if holder is None or holder.source.startswith("scim:"):
            return None
        if uow.scim_resources.get(USER_KIND.name, holder.id) is not None:
            return None  # another client holds it already: 409 as before
        return holder.id

    def _claims(self, uow: UnitOfWork, existing: DirectoryUser) -> dict[str, dict[str, Any]]:
        claims = uow.source_claims.for_user(existing.id)
        if existing.source not in claims:  # written before claims were kept
            claims[existing.source] = record_claims(uow, existing)
        return claims

    def _resolve(
        self,
        uow: UnitOfWork,
        client: str,
        existing: DirectoryUser,
        claims: dict[str, dict[str, Any]],
        *,
        at: datetime,
        tracker: GroupChangeTracker,
    ) -> list[Override]:
        source = f"scim:{client}"
        assert self.truth is not None
        try:
            _, overrides = write_resolved(
                uow,
                existing.id,
                existing,
                claims,
                self.truth,
                writer=source,
                owner=existing.source,
                actor=source,
                at=at,
                set_groups=lambda uid, names: self._set_groups(
                    uow, source, uid, names, at, tracker
                ),
            )
        except Conflict as exc:
            raise Uniqueness("userName is already taken") from exc
        if overrides:
            log.info("scim %s: source of truth: %s", source, "; ".join(map(str, overrides)))
        return overrides

    def _write_shared(
        self,
        uow: UnitOfWork,
        client: str,
        existing: DirectoryUser,
        doc: dict[str, Any],
        *,
        at: datetime,
    ) -> list[Override]:
        """Record what the client says about a shared user, then resolve the record."""
        source = f"scim:{client}"
        claims = self._claims(uow, existing)
        mine = dict(claims.get(source, {}))
        mine.update(
            username=doc["userName"],
            email=_email(doc),
            display_name=_display(doc),
            active=doc.get("active", True) is not False,
        )
        uow.source_claims.put(existing.id, source, mine, at=at)
        claims[source] = mine
        tracker = GroupChangeTracker(uow, cause=source)
        overrides = self._resolve(uow, client, existing, claims, at=at, tracker=tracker)
        tracker.flush(at=at)
        return overrides

    def _claim_groups(
        self,
        uow: UnitOfWork,
        client: str,
        user_id: str,
        *,
        drop: str | None,
        add: str | None,
        at: datetime,
        tracker: GroupChangeTracker,
    ) -> list[Override]:
        """A SCIM group of the client gained (``add``) or lost (``drop``) a shared user."""
        source = f"scim:{client}"
        existing = uow.directory_users.get(user_id)
        if existing is None:
            return []
        claims = self._claims(uow, existing)
        mine = claims.get(source)
        if mine is None:  # a shared user its SCIM record never described (should not be)
            return []
        groups = {str(g) for g in mine.get("groups", [])} - ({drop} if drop else set())
        if add:
            groups.add(add)
        mine = {**mine, "groups": sorted(groups)}
        uow.source_claims.put(user_id, source, mine, at=at)
        claims[source] = mine
        return self._resolve(uow, client, existing, claims, at=at, tracker=tracker)

    def _withdraw(
        self, uow: UnitOfWork, client: str, existing: DirectoryUser, *, at: datetime
    ) -> list[Override]:
        """DELETE of a shared user: the client's claims go, the other sources' stand."""
        source = f"scim:{client}"
        uow.source_claims.remove(existing.id, source)
        claims = self._claims(uow, existing)
        claims.pop(source, None)
        tracker = GroupChangeTracker(uow, cause=source)
        overrides = self._resolve(uow, client, existing, claims, at=at, tracker=tracker)
        tracker.flush(at=at)
        return overrides

    def _set_groups(
        self,
        uow: UnitOfWork,
        source: str,
        user_id: str,
        names: Sequence[str],
        at: datetime,
        tracker: GroupChangeTracker,
    ) -> bool:
        """Make the user's direct groups exactly ``names`` (an unknown name is created, owned
        by ``source``, as a sync does: a missing group could drop a stricter policy)."""
        wanted = set()
        for name in names:
            group = uow.directory_groups.find_by_name(name)
            if group is None:
                gid = name if uow.directory_groups.get(name) is None else f"{source}:{name}"
                uow.directory_groups.upsert(
                    DirectoryGroup(id=gid, name=name, source=source, updated_at=at)
                )
            else:
                gid = group.id
            wanted.add(Membership(gid, user_id, MemberKind.USER))
        current = set(uow.memberships.parents(MemberKind.USER, [user_id]))
        removed = [
            remove_membership(uow, m, at=at, tracker=tracker) for m in sorted(current - wanted)
        ]
        added = [add_membership(uow, m, at=at, tracker=tracker) for m in sorted(wanted - current)]
        return any(removed) or any(added)

    def _forget_member(self, uow: UnitOfWork, client: str, user_id: str, *, at: datetime) -> None:
        """A deleted user leaves the member lists the client's groups keep (their version
        moves on: the representation changed)."""
        for group in uow.scim_resources.list(GROUP_KIND.name, client):
            members = group.document.get("members")
            if not members or not any(m.get("value") == user_id for m in members):
                continue
            kept = [m for m in members if m.get("value") != user_id]
            updated = replace(
                group,
                version=group.version + 1,
                last_modified=at,
                document={**group.document, "members": kept},
            )
            self._store(uow, updated, expected=group.version)

    def _membership(
        self, uow: UnitOfWork, client: str, group_id: str, member: dict[str, Any]
    ) -> Membership:
        value = member.get("value")
        if not isinstance(value, str) or not value:
            raise BadRequest("members[].value is required", "invalidValue")
        kinds = {"User": [USER_KIND], "Group": [GROUP_KIND]}.get(
            str(member.get("type")), [USER_KIND, GROUP_KIND]
        )
        for kind in kinds:
            found = uow.scim_resources.get(kind.name, value)
            if found is not None and found.client == client:
                if kind is GROUP_KIND and value == group_id:
                    raise BadRequest("a group cannot contain itself", "invalidValue")
                member_kind = MemberKind.USER if kind is USER_KIND else MemberKind.GROUP
                return Membership(group_id, value, member_kind)
        raise BadRequest(f"member {value} is not a known User or Group", "invalidValue")


def _member_list(members: Collection[Membership]) -> list[dict[str, str]]:
    return [
        {"value": m.member_id, "type": "User" if m.member_kind is MemberKind.USER else "Group"}
        for m in sorted(members)
    ]


def _with_members(record: ScimResource, members: Sequence[dict[str, Any]]) -> ScimResource:
    """The group record keeping the client's members in its document (what it answers)."""
    kept = [{"value": m["value"], "type": m["type"]} for m in members]
    return replace(record, document={**record.document, "members": kept})


def _with_overrides(detail: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    if overrides:
        detail["overridden"] = [o.to_json() for o in overrides]
    return detail


def _mirrored(kind: ResourceKind, doc: dict[str, Any]) -> tuple[Any, ...]:
    """What the mirror holds of ``doc``: a change elsewhere (title, phone, ...) leaves the
    mirror, memberships and account state alone."""
    if kind is USER_KIND:
        active = doc.get("active", True) is not False
        return (doc.get("userName"), active, _email(doc), _display(doc), doc.get("externalId"))
    return (doc.get("displayName"), doc.get("externalId"), doc.get("members"))


def _check_schemas(kind: ResourceKind, body: dict[str, Any]) -> None:
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise BadRequest("schemas must be an array of schema URNs", "invalidSyntax")
    lowered = {s.lower() for s in schemas}
    if kind.core.id.lower() not in lowered:
        raise BadRequest(f"schemas must list {kind.core.id}", "invalidSyntax")
    known = {s.lower() for s in kind.schema_ids}
    if lowered - known:
        raise BadRequest("schemas lists a schema this resource type does not have", "invalidValue")


def _email(doc: dict[str, Any]) -> str | None:
    emails = [e for e in doc.get("emails", []) if isinstance(e.get("value"), str)]
    chosen = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
    value = chosen["value"] if chosen else None
    return value if value is not None and len(value) <= 320 else None


def _display(doc: dict[str, Any]) -> str | None:
    name = doc.get("displayName") or (doc.get("name") or {}).get("formatted")
    return str(name)[:256] if name else None


def _subject(kind: ResourceKind, resource_id: str) -> str:
    return f"{'user' if kind is USER_KIND else 'group'}:{resource_id}"


def _changed(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    return {k for k in set(old) | set(new) if old.get(k) != new.get(k)}


def _unknown(kind: ResourceKind, path: Any) -> bool:
    return attr_def(kind, path) is None


def _mentions_related(query: Query) -> bool:
    text = f"{query.filter or ''} {query.sort_by or ''}".lower()
    return "members" in text or "groups" in text


def _without_related(kind: ResourceKind, doc: dict[str, Any]) -> dict[str, Any]:
    drop = "members" if kind is GROUP_KIND else "groups"
    return {k: v for k, v in doc.items() if k != drop}


def _sorted(
    docs: list[dict[str, Any]], kind: ResourceKind, path: Any, *, descending: bool
) -> list[dict[str, Any]]:
    definition = attr_def(kind, path)
    case_exact = definition is not None and definition.case_exact

    def key(doc: dict[str, Any]) -> tuple[int, str]:
        values = resolve(doc, kind, path)
        if not values:
            return (1, "")
        value = values[0]
        text = value if isinstance(value, str) else str(value)
        return (0, text if case_exact else text.lower())

    present = [d for d in docs if key(d)[0] == 0]
    missing = [d for d in docs if key(d)[0] == 1]
    present.sort(key=key, reverse=descending)
    return present + missing  # unassigned values sort last either way (RFC 7644 §3.4.2.3)
