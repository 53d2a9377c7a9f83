"""Pure parts of the LDAP connector: DN canonical form, cycle-safe expansion, the mapper."""

from __future__ import annotations

import uuid

import pytest

from idp_connectors.ldap import LdapSettings
from idp_connectors.ldap.nested import in_chain_filter, transitive_users
from idp_connectors.ldap.schema import EntryError, LdapGroup, Mapper, canonical_dn, resolve


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("cn=Smith\\2C John (IT),ou=Users,dc=x", "CN=Smith\\, John (IT), OU=users,DC=x"),
        ("cn=Back\\5Cslash,dc=x", "cn=Back\\\\slash,dc=x"),
        ("cn=\\23hash,dc=x", "cn=\\#hash,dc=x"),
        ("cn=a+uid=b,dc=x", "CN=A+UID=B,DC=X"),
    ],
)
def test_spellings_of_one_dn_compare_equal(one: str, other: str) -> None:
    assert canonical_dn(one) == canonical_dn(other)


def test_different_dns_stay_different() -> None:
    assert canonical_dn("cn=a\\,b,dc=x") != canonical_dn("cn=a,cn=b,dc=x")


def _g(name: str, *members: str) -> LdapGroup:
    return LdapGroup(id=name, dn=name, name=name, members=members, change=None)


def test_expansion_of_a_cycle_terminates_and_finds_every_user() -> None:
    groups = {
        "a": _g("a", "b", "u1"),
        "b": _g("b", "c", "u2"),
        "c": _g("c", "a", "u3"),  # c -> a closes the cycle
        "d": _g("d", "u4"),
    }
    assert transitive_users(groups, "a", {"u1", "u2", "u3", "u4"}) == {"u1", "u2", "u3"}
    assert transitive_users(groups, "d", {"u1", "u4"}) == {"u4"}
    assert transitive_users(groups, "missing", {"u1"}) == set()


def test_in_chain_filter_escapes_the_dn() -> None:
    assert in_chain_filter("cn=a (b)*,dc=x") == (
        "(memberOf:1.2.840.113556.1.4.1941:=cn=a \\28b\\29\\2a,dc=x)"
    )


def _mapper(schema: str, **over: object) -> Mapper:
    settings = LdapSettings.model_validate(
        {"url": "ldaps://h", "schema": schema, "base_dn": "dc=x", "allow_anonymous": True, **over}
    )
    return Mapper(resolve(settings))


def test_ad_guid_and_account_disable_bit() -> None:
    guid = uuid.uuid4()
    mapper = _mapper("ad")
    raw = {
        "objectGUID": [guid.bytes_le],
        "sAMAccountName": [b"bob"],
        "userAccountControl": [b"514"],
    }
    user = mapper.user("CN=Bob,DC=x", raw)
    assert user.id == str(guid) and user.disabled and user.dn == "cn=bob,dc=x"
    assert not mapper.user("cn=b", {**raw, "userAccountControl": [b"512"]}).disabled
    with pytest.raises(EntryError):
        mapper.user("cn=b", {**raw, "objectGUID": [b"short"]})
    with pytest.raises(EntryError):
        mapper.user("cn=b", {"objectGUID": [guid.bytes_le]})


def test_openldap_lock_and_a_configured_disabled_attribute() -> None:
    mapper = _mapper("openldap", disabled_attribute="employeeType", disabled_values=["Left"])
    base = {"entryUUID": [b"0f8fad5b-d9cb-469f-a165-70867728950e"], "uid": [b"ann"]}
    assert not mapper.user("uid=ann", base).disabled
    assert mapper.user("uid=ann", {**base, "pwdAccountLockedTime": [b"000001010000Z"]}).disabled
    assert mapper.user("uid=ann", {**base, "employeeType": [b"left"]}).disabled
    assert not mapper.user("uid=ann", {**base, "employeeType": [b"staff"]}).disabled
