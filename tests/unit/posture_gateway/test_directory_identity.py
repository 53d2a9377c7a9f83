"""Issue 7 finding 8: outside identities resolve by (issuer, subject), never by name.

The real :class:`DirectoryUserResolver` on SQLite and PostgreSQL: first links only by each
issuer's explicit rule, later resolution by the link alone, never across issuers, a disabled
user gets nothing, and every refusal leaves no link behind.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from idp_connectors.entra import EntraHintSettings
from idp_connectors.identity import ExternalIdentity, IdentityLinking
from idp_connectors.oidc_upstream import UpstreamOidcSettings
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.identity_links import IdentityLink
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.directory.identity import DirectoryUserResolver, linking_rules
from posture_gateway.integrations.settings import (
    EntraEamSettings,
    IntegrationSettings,
    OktaHookSettings,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CORP = "https://corp.example"
PARTNER = "https://partner.example"
EMAIL = IdentityLinking(link_by="email", allowed_email_domains=("example.com",))
USERNAME = IdentityLinking(link_by="username")


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        for uid, name, email, active in (
            ("u-alice", "alice", "alice@example.com", True),
            ("u-bob", "bob", "bob@example.com", True),
            ("u-carl", "carl", "carl@example.com", False),
        ):
            uow.directory_users.upsert(DirectoryUser(uid, name, active, "scim", T0, email=email))
    return storage


def resolver(storage: SqlStorage, **rules: IdentityLinking) -> DirectoryUserResolver:
    by_issuer = {
        CORP: rules.get("corp", IdentityLinking()),
        PARTNER: rules.get("partner", IdentityLinking()),
    }
    return DirectoryUserResolver(storage, rules=by_issuer, clock=lambda: T0)


def ident(issuer: str = CORP, subject: str = "s-1", **kw: object) -> ExternalIdentity:
    return ExternalIdentity(issuer=issuer, subject=subject, **kw)  # type: ignore[arg-type]


def links(storage: SqlStorage, user_id: str = "u-alice") -> list[tuple[str, str, str]]:
    with storage.unit_of_work() as uow:
        return [(x.issuer, x.subject, x.method) for x in uow.identity_links.for_user(user_id)]


def audit(storage: SqlStorage, action: str) -> list[dict[str, object]]:
    from sqlalchemy import select

    from mdm_core.storage.sql.tables import audit_log

    with storage.unit_of_work() as uow:
        rows = uow.conn.execute(  # type: ignore[attr-defined]
            select(audit_log.c.detail).where(audit_log.c.action == action)
        )
        return [r.detail for r in rows]


def test_verified_email_in_an_allowed_domain_links_once_then_iss_sub_decides(
    storage: SqlStorage,
) -> None:
    r = resolver(storage, corp=EMAIL)
    first = ident(email="Alice@Example.com", email_verified=True, username="whatever")
    assert r.resolve(first) == "u-alice"
    assert links(storage) == [(CORP, "s-1", "email")]
    assert audit(storage, "identity.linked")[0]["subject"] == "s-1"
    # later logins: the link alone; the names it asserts now do not matter
    renamed = ident(email="bob@example.com", email_verified=True, username="bob")
    assert r.resolve(renamed) == "u-alice"
    assert r.resolve(ident()) == "u-alice"
    assert links(storage, "u-bob") == []


@pytest.mark.parametrize(
    ("identity", "reason"),
    [
        (ident(email="alice@example.com", email_verified=False), "email_not_verified"),
        (ident(email="alice@evil.example", email_verified=True), "email_domain_not_allowed"),
        (ident(email="alice@sub.example.com", email_verified=True), "email_domain_not_allowed"),
        (ident(username="alice"), "no_email"),
        (ident(email="nobody@example.com", email_verified=True), "no_matching_user"),
    ],
)
def test_email_rule_refusals_link_nothing(
    storage: SqlStorage, identity: ExternalIdentity, reason: str
) -> None:
    assert resolver(storage, corp=EMAIL).resolve(identity) is None
    assert links(storage) == [] and links(storage, "u-bob") == []
    assert [d["reason"] for d in audit(storage, "identity.link_refused")] == [reason]


def test_an_ambiguous_email_links_nobody(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(
            DirectoryUser("u-alice2", "alice2", True, "ldap", T0, email="ALICE@example.com")
        )
    identity = ident(email="alice@example.com", email_verified=True)
    assert resolver(storage, corp=EMAIL).resolve(identity) is None
    assert links(storage) == [] and links(storage, "u-alice2") == []


def test_no_rule_means_only_pre_linked_identities(storage: SqlStorage) -> None:
    r = resolver(storage)  # link_by: none
    claimed = ident(username="alice", email="alice@example.com", email_verified=True)
    assert r.resolve(claimed) is None
    assert links(storage) == []
    with storage.unit_of_work() as uow:  # the admin links it (posture users link)
        uow.identity_links.link(IdentityLink(CORP, "s-1", "u-alice", T0, "admin"))
    assert r.resolve(claimed) == "u-alice"
    assert r.resolve(ident(subject="s-2", username="alice")) is None  # another subject


def test_an_unconfigured_issuer_links_nothing(storage: SqlStorage) -> None:
    r = resolver(storage, corp=USERNAME)
    assert r.resolve(ident(issuer="https://unknown.example", username="alice")) is None
    assert links(storage) == []


def test_username_rule_is_an_explicit_opt_in_with_optional_domains(storage: SqlStorage) -> None:
    assert resolver(storage, corp=USERNAME).resolve(ident(username="alice")) == "u-alice"
    assert links(storage) == [(CORP, "s-1", "username")]
    scoped = IdentityLinking(link_by="username", allowed_username_domains=("example.com",))
    r = resolver(storage, partner=scoped)
    assert r.resolve(ident(PARTNER, "p-1", username="bob")) is None  # no domain
    assert r.resolve(ident(PARTNER, "p-1", username="bob@evil.example")) is None
    assert links(storage, "u-bob") == []


def test_a_second_upstream_asserting_alices_name_is_refused_nothing_linked(
    storage: SqlStorage,
) -> None:
    r = resolver(
        storage,
        corp=EMAIL,
        partner=IdentityLinking(link_by="email", allowed_email_domains=("partner.example",)),
    )
    alice = ident(CORP, "s-1", username="alice", email="alice@example.com", email_verified=True)
    assert r.resolve(alice) == "u-alice"
    # partner asserts the very same sub, name and email
    same = ident(PARTNER, "s-1", username="alice", email="alice@example.com", email_verified=True)
    assert r.resolve(same) is None
    assert links(storage) == [(CORP, "s-1", "email")]


def test_a_new_subject_of_the_same_issuer_cannot_take_a_linked_user(storage: SqlStorage) -> None:
    r = resolver(storage, corp=USERNAME)
    assert r.resolve(ident(subject="s-1", username="alice")) == "u-alice"
    assert r.resolve(ident(subject="s-imposter", username="alice")) is None
    assert links(storage) == [(CORP, "s-1", "username")]
    reasons = [d["reason"] for d in audit(storage, "identity.link_refused")]
    assert reasons == ["user_linked_to_another_subject"]


def test_a_link_to_a_disabled_user_gives_no_access(storage: SqlStorage) -> None:
    r = resolver(storage, corp=USERNAME)
    assert r.resolve(ident(username="alice")) == "u-alice"
    with storage.unit_of_work() as uow:
        uow.directory_users.set_active("u-alice", False, at=T0)
    assert r.resolve(ident(username="alice")) is None
    # a disabled user is never linked in the first place
    assert r.resolve(ident(subject="s-9", username="carl")) is None
    assert links(storage, "u-carl") == []


def test_a_user_offboarding_blocked_is_never_linked(storage: SqlStorage) -> None:
    """HR said "gone" before the directory did: no new identity may be tied to the account."""
    from mdm_core.offboarding.model import UserBlock

    with storage.unit_of_work() as uow:
        uow.offboarding.block(UserBlock("u-alice", "job-1", "terminated", T0))
    r = resolver(storage, corp=USERNAME)
    assert r.resolve(ident(username="alice")) is None
    assert links(storage) == []
    assert [d["reason"] for d in audit(storage, "identity.link_refused")] == ["user_offboarding"]
    with storage.unit_of_work() as uow:  # reinstated: the first link is made as usual
        uow.offboarding.unblock("u-alice")
    assert r.resolve(ident(username="alice")) == "u-alice"


def test_a_link_to_a_deleted_user_gives_no_access(storage: SqlStorage) -> None:
    r = resolver(storage, corp=USERNAME)
    assert r.resolve(ident(username="bob")) == "u-bob"
    with storage.unit_of_work() as uow:
        uow.directory_users.delete("u-bob")
        uow.directory_users.upsert(DirectoryUser("u-bob2", "bob", True, "scim", T0))
    # the link went with the user; the new "bob" is linked afresh under the rule
    assert r.resolve(ident(username="bob")) == "u-bob2"


@pytest.mark.parametrize(
    "identity",
    [
        ident(subject=""),
        ident(issuer=""),
        ident(subject="a\x00b", username="alice"),
        ident(username="ali\x00ce"),
        ident(email="alice@example.com\x00", email_verified=True),
        ident(subject="s" * 257, username="alice"),
        ident(issuer="https://" + "i" * 600, username="alice"),
        ident(username="a" * 5000),
    ],
)
def test_malformed_identities_resolve_to_nobody_without_asking_the_store(
    storage: SqlStorage, identity: ExternalIdentity
) -> None:
    assert resolver(storage, corp=USERNAME).resolve(identity) is None
    assert links(storage) == []


def test_rules_come_from_the_integration_settings() -> None:
    settings = IntegrationSettings(
        upstreams=(
            UpstreamOidcSettings(name="corp", issuer=CORP, client_id="gw", linking=EMAIL),
            UpstreamOidcSettings(name="partner", issuer=PARTNER, client_id="gw"),
        ),
        okta=OktaHookSettings(identity_issuer="okta-prod", linking=USERNAME),
        entra=EntraEamSettings(
            hint=EntraHintSettings(
                tenant_ids=("t1", "t2"), app_id="11111111-2222-3333-4444-555555555555"
            ),
            client_id="eam",
            linking=USERNAME,
        ),
    )
    exact, prefix = linking_rules(settings)
    assert exact == {
        CORP: EMAIL,
        PARTNER: IdentityLinking(),
        "entra:t1": USERNAME,
        "entra:t2": USERNAME,
        "okta-prod": USERNAME,
    }
    r = DirectoryUserResolver.from_settings(SqlStorage.__new__(SqlStorage), settings)
    assert r.rule_for("posture-api:okta-idp") == IdentityLinking(link_by="username")
    assert r.rule_for("posture-api:") == IdentityLinking()
    assert r.rule_for("https://elsewhere.example") == IdentityLinking()


def test_one_issuer_with_two_rules_is_a_configuration_error() -> None:
    settings = IntegrationSettings(
        upstreams=(
            UpstreamOidcSettings(name="a", issuer=CORP, client_id="gw", linking=EMAIL),
            UpstreamOidcSettings(name="b", issuer=CORP, client_id="gw2", linking=USERNAME),
        )
    )
    with pytest.raises(ValueError, match="two linking rules"):
        linking_rules(settings)


@pytest.mark.parametrize(
    "config",
    [
        {"link_by": "email"},  # which domains?
        {"link_by": "email", "allowed_email_domains": ["@example.com"]},
        {"link_by": "username", "allowed_username_domains": [""]},
        {"link_by": "sometimes"},
        {"link_by": "email", "allowed_email_domains": ["example.com"], "extra": 1},
    ],
)
def test_linking_configuration_is_validated(config: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        IdentityLinking.model_validate(config)


def test_domains_are_lowercased() -> None:
    rule = IdentityLinking(link_by="email", allowed_email_domains=("Example.COM",))
    assert rule.allowed_email_domains == ("example.com",)
