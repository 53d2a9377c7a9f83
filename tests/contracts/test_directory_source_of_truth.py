"""Contract of the per-attribute source of truth (``sync_source(..., source_of_truth=...)``) on
SQLite and PostgreSQL: several sources feed one record, the configured order wins per
attribute, a lower source never overwrites a higher one, every conflict is reported, the
existing call signature keeps its single-owner behaviour, and group changes are events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mdm_core.bus.events import EventType
from mdm_core.directory.mirror import effective_group_names
from mdm_core.directory.precedence import SourceOfTruth, SourceOfTruthError
from mdm_core.directory.sync import SourceUser, sync_source
from mdm_core.domain.errors import Conflict
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TRUTH = SourceOfTruth.parse(
    {"groups": ["ldap", "scim", "file"], "email": ["scim", "ldap"], "active": ["ldap", "scim"]}
)


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return SqlStorage(database)


def _sync(storage: SqlStorage, source: str, users: list[SourceUser], **kw):
    kw.setdefault("source_of_truth", TRUTH)
    return sync_source(storage, source, users, clock=lambda: T0, **kw)


def _bob(**kw) -> SourceUser:
    values = {"id": "u-bob", "username": "bob", "email": None, "groups": ()}
    values.update(kw)
    return SourceUser(**values)  # type: ignore[arg-type]


def _record(storage: SqlStorage):
    with storage.unit_of_work() as uow:
        user = uow.directory_users.get("u-bob")
        groups = effective_group_names(uow, "u-bob")
        entries = uow.outbox.fetch_unpublished(1000)
    events = [e.event for e in entries if e.event.type == EventType.USER_GROUPS_CHANGED]
    return user, groups, events


def test_each_attribute_comes_from_its_highest_source(storage: SqlStorage) -> None:
    _sync(storage, "file", [_bob(email="bob@file", groups=("marketing",))])
    ldap = _sync(storage, "ldap", [_bob(email="bob@ldap", groups=("finance",))])
    # ldap outranks file for groups; email: ldap is listed, file is not -> ldap wins
    assert ldap.changed == ["u-bob"]
    assert {str(o) for o in ldap.overrode} == {
        "u-bob.groups: ldap [finance] over file [marketing]",
        "u-bob.email: ldap 'bob@ldap' over file 'bob@file'",
    }
    scim = _sync(storage, "scim", [_bob(email="bob@scim", groups=("sales",))])
    user, groups, _ = _record(storage)
    assert user is not None and user.email == "bob@scim"  # scim first for email
    assert groups == {"finance"}  # ldap first for groups: scim's [sales] is ignored
    assert {str(o) for o in scim.ignored} == {"u-bob.groups: ldap [finance] over scim [sales]"}
    assert any(o.attribute == "email" and o.winner == "scim" for o in scim.overrode)


def test_a_lower_source_never_overwrites_a_higher_one(storage: SqlStorage) -> None:
    _sync(storage, "ldap", [_bob(groups=("finance",))])
    before = _record(storage)
    again = _sync(storage, "file", [_bob(groups=("marketing",))])
    after = _record(storage)
    assert after[1] == {"finance"} and after[2] == before[2]  # nothing changed, no new event
    assert again.unchanged == ["u-bob"] and again.groups_changed_users == []
    assert [o.loser for o in again.ignored] == ["file"]
    # running it twice is still nothing
    assert _sync(storage, "file", [_bob(groups=("marketing",))]).groups_changed_users == []


def test_a_group_change_is_one_event_with_before_and_after(storage: SqlStorage) -> None:
    _sync(storage, "ldap", [_bob(groups=("marketing",))])
    moved = _sync(storage, "ldap", [_bob(groups=("finance",))])
    assert moved.groups_changed_users == ["u-bob"]
    _, _, events = _record(storage)
    last = events[-1]
    assert last.subject == "u-bob"
    assert (last.payload["before"], last.payload["after"]) == (["marketing"], ["finance"])
    assert last.payload["cause"] == "directory.sync:ldap"


def test_prune_withdraws_claims_and_the_next_source_takes_over(storage: SqlStorage) -> None:
    _sync(storage, "ldap", [_bob(groups=("finance",))])
    _sync(storage, "file", [_bob(groups=("marketing",))])
    pruned = _sync(storage, "ldap", [], prune=True)
    user, groups, _ = _record(storage)
    assert pruned.changed == ["u-bob"] and pruned.disabled == []
    assert user is not None and user.active and groups == {"marketing"}  # file is what is left
    gone = _sync(storage, "file", [], prune=True)
    user, _, _ = _record(storage)
    assert gone.disabled == ["u-bob"] and user is not None and not user.active


def test_active_follows_its_own_order(storage: SqlStorage) -> None:
    _sync(storage, "scim", [_bob(active=False)])
    _sync(storage, "ldap", [_bob(active=True)])
    user, _, _ = _record(storage)
    assert user is not None and user.active  # ldap before scim for active


@pytest.mark.parametrize("order", [("ldap", "scim"), ("scim", "ldap")])
def test_an_unlisted_active_fails_closed_whoever_writes_last(
    storage: SqlStorage, order: tuple[str, str]
) -> None:
    """No order for ``active``: the disabling source wins in both orders of arrival."""
    truth = SourceOfTruth.parse({"groups": ["ldap", "scim"]})
    first, second = order
    values = {"ldap": False, "scim": True}
    _sync(storage, first, [_bob(active=values[first])], source_of_truth=truth)
    summary = _sync(storage, second, [_bob(active=values[second])], source_of_truth=truth)
    user, _, _ = _record(storage)
    assert user is not None and not user.active
    won = [o for o in summary.overrides if o.attribute == "active"]
    assert [(o.winner, o.winner_value, o.loser_value) for o in won] == [("ldap", False, True)]


def test_the_fail_closed_rule_leaves_a_configured_active_order_alone() -> None:
    truth = SourceOfTruth.parse({"active": ["scim", "ldap"]})
    claims = {"ldap": {"active": False}, "scim": {"active": True}}
    resolved, overrides = truth.resolve("u-bob", claims, writer="ldap")
    assert resolved["active"] is True and [o.winner for o in overrides] == ["scim"]
    unlisted = SourceOfTruth.parse({"groups": ["ldap"]})
    resolved, overrides = unlisted.resolve("u-bob", claims, writer="scim")
    assert resolved["active"] is False and [o.loser for o in overrides] == ["scim"]


def test_a_record_written_before_claims_keeps_its_values_as_its_source(
    storage: SqlStorage,
) -> None:
    sync_source(storage, "ldap", [_bob(groups=("finance",))], clock=lambda: T0)  # no truth
    summary = _sync(storage, "file", [_bob(groups=("marketing",))])
    _, groups, _ = _record(storage)
    assert groups == {"finance"} and [o.winner for o in summary.ignored] == ["ldap"]


def test_without_a_source_of_truth_the_single_owner_rules_stand(storage: SqlStorage) -> None:
    sync_source(storage, "ldap", [_bob(groups=("finance",))], clock=lambda: T0)
    other = sync_source(storage, "scim", [_bob(groups=("sales",))], clock=lambda: T0)
    assert other.skipped == ["u-bob (owned by ldap)"] and other.overrides == []
    empty = _sync(storage, "scim", [_bob(groups=("sales",))], source_of_truth=SourceOfTruth())
    assert empty.skipped == ["u-bob (owned by ldap)"]
    _, groups, _ = _record(storage)
    assert groups == {"finance"}


def test_a_username_conflict_writes_nothing(storage: SqlStorage) -> None:
    _sync(storage, "ldap", [_bob(groups=("finance",))])
    _sync(storage, "ldap", [SourceUser(id="u-eve", username="eve")])
    before = _record(storage)
    with pytest.raises(Conflict):
        _sync(storage, "scim", [SourceUser(id="u-eve", username="bob", groups=("x",))])
    assert _record(storage) == before
    with storage.unit_of_work() as uow:
        assert "scim" not in uow.source_claims.for_user("u-eve")  # rolled back too


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": ["ldap"]}, "directory.source_of_truth.colour: unknown attribute"),
        ({"groups": []}, "groups: expected a non-empty list"),
        ({"groups": "ldap"}, "groups: expected a non-empty list"),
        ({"groups": ["ldap", "ldap"]}, "'ldap' is listed twice"),
        ({"email": ["LDAP!"]}, "'LDAP!' is not a source name"),
    ],
)
def test_bad_configuration_is_refused_naming_the_key(raw: dict, message: str) -> None:
    with pytest.raises(SourceOfTruthError, match=message):
        SourceOfTruth.parse(raw)


def test_the_claim_store_contract(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        claims = uow.source_claims
        assert claims.for_user("nobody") == {} and claims.users("ldap") == []
        assert claims.remove("nobody", "ldap") is False
        assert claims.put("u1", "ldap", {"groups": ["a"], "active": True}, at=T0) is True
        assert claims.put("u1", "ldap", {"groups": ["a"], "active": True}, at=T0) is False
        assert claims.put("u1", "ldap", {"groups": ["b"], "active": True}, at=T0) is True
        assert claims.put("u1", "scim", {"email": "x@y"}, at=T0) is True
        assert claims.put("u0", "ldap", {}, at=T0) is True
        assert claims.for_user("u1") == {
            "ldap": {"groups": ["b"], "active": True},
            "scim": {"email": "x@y"},
        }
        assert claims.users("ldap") == ["u0", "u1"]
        assert claims.remove("u1", "ldap") is True
        assert claims.for_user("u1") == {"scim": {"email": "x@y"}}
