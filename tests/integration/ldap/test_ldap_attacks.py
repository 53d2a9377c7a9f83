"""Attacks and failure paths of the LDAP connector: filter injection, TLS with the wrong CA,
a refused bind, an unsupported in-chain rule; each refused with nothing changed."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable
from pathlib import Path

import ldap3
import pytest

from idp_connectors.ldap import (
    LdapBindError,
    LdapSync,
    LdapTlsError,
    LdapUnsupported,
)
from idp_connectors.ldap.client import connect
from idp_connectors.ldap.filters import equals, escape_value
from idp_connectors.ldap.nested import supports_in_chain
from mdm_core.storage.sql.uow import SqlStorage
from tests.helpers.ldap_data import DirectoryData
from tests.integration.ldap.conftest import settings_for
from tests.slapd import ADMIN_PASSWORD, PrivateSlapd, make_ca

INJECTIONS = [
    "*",
    "*)(uid=*",
    "*)(sAMAccountName=*",
    "user00001)(|(objectClass=*",
    "a\x00b",
    "(",
    ")",
    "\\",
    "\\2a",
    "user0000*",
]


def _mirror_size(storage: SqlStorage) -> int:
    with storage.unit_of_work() as uow:
        return len(uow.directory_users.list())


@pytest.mark.parametrize("value", INJECTIONS)
def test_filter_values_are_escaped_and_read_nothing_extra(
    make_sync: Callable[..., LdapSync], small: DirectoryData, value: str
) -> None:
    assert make_sync(small).find_users(value) == []


def test_a_username_made_of_filter_syntax_matches_only_itself(
    slapd: PrivateSlapd, make_sync: Callable[..., LdapSync], small: DirectoryData
) -> None:
    evil = "ev*l)(uid=*\\x"
    attribute = "sAMAccountName" if small.flavor == "ad" else "uid"
    conn = ldap3.Connection(
        ldap3.Server(slapd.url), f"cn=admin,{small.suffix}", ADMIN_PASSWORD, auto_bind=True
    )
    attrs: dict[str, object] = {"cn": "Evil", "sn": "Evil", attribute: evil}
    classes = ["user"] if small.flavor == "ad" else ["inetOrgPerson"]
    if small.flavor == "ad":
        attrs["objectGUID"] = uuid.uuid4().bytes_le
    assert conn.add(f"cn=Evil,ou=users,{small.base}", classes, attrs), conn.result
    conn.unbind()
    found = make_sync(small).find_users(evil)
    assert [u.username for u in found] == [evil]
    assert make_sync(small).find_users("ev*") == []


def test_escape_value_covers_rfc4515_specials() -> None:
    assert escape_value("*)(uid=*") == "\\2a\\29\\28uid=\\2a"
    assert escape_value("a\x00b\\c") == "a\\00b\\5cc"
    assert escape_value("é") == "\\c3\\a9"
    assert equals("uid", "x)(|(a=*") == "(uid=x\\29\\28|\\28a=\\2a)"
    with pytest.raises(ValueError, match="attribute name"):
        equals("uid)(objectClass=*", "x")


def test_tls_with_a_wrong_ca_is_refused_before_any_bind(
    slapd: PrivateSlapd, small: DirectoryData, storage: SqlStorage, tmp_path: Path
) -> None:
    wrong_ca, _, _ = make_ca(tmp_path / "other", "not the directory's CA")
    for url in (slapd.url, slapd.ldaps_url):
        settings = settings_for(slapd, small, url=url, ca_file=wrong_ca)
        with pytest.raises(LdapTlsError, match="certificate verify failed"):
            LdapSync(settings, storage).run()
    assert _mirror_size(storage) == 0


def test_ldaps_and_starttls_with_the_right_ca_work(
    slapd: PrivateSlapd, small: DirectoryData
) -> None:
    with connect(settings_for(slapd, small)) as session:
        assert session.conn.tls_started  # StartTLS on ldap://
    with connect(settings_for(slapd, small, url=slapd.ldaps_url)) as session:
        assert session.conn.server.ssl


def test_the_tls_context_checks_the_host_name(slapd: PrivateSlapd, small: DirectoryData) -> None:
    # The test certificate names both 127.0.0.1 and localhost, so a mismatch cannot be provoked
    # against this slapd; the standard library's host check is asserted on instead.
    with connect(settings_for(slapd, small, url=slapd.ldaps_url)) as session:
        tls = session.conn.server.tls
        assert tls._context.check_hostname and tls._context.verify_mode == ssl.CERT_REQUIRED


def test_a_refused_bind_names_no_password(
    slapd: PrivateSlapd, small: DirectoryData, storage: SqlStorage
) -> None:
    settings = settings_for(slapd, small, bind_password="wrong-password-123")
    with pytest.raises(LdapBindError) as caught:
        LdapSync(settings, storage).run()
    assert "wrong-password-123" not in str(caught.value)
    assert caught.value.reason == "ldap.bind"
    assert _mirror_size(storage) == 0


def test_in_chain_on_a_server_without_it_is_refused_and_auto_falls_back(
    slapd: PrivateSlapd, small: DirectoryData, storage: SqlStorage
) -> None:
    with connect(settings_for(slapd, small)) as session:
        assert supports_in_chain(session) is False  # OpenLDAP does not publish the rule
    root = small.teams[0]
    forced = settings_for(slapd, small, required_group=root.dn, nested="in_chain")
    with pytest.raises(LdapUnsupported):
        LdapSync(forced, storage).run()
    assert _mirror_size(storage) == 0
    result = LdapSync(settings_for(slapd, small, required_group=root.dn), storage).run()
    assert result.nested == "recursive"
    # Group 0 heads the nesting chain: its users at any depth, and no one else.
    expected = {str(p.guid) for p in small.people if root.name in small.effective_groups(p.dn)}
    with storage.unit_of_work() as uow:
        synced = {u.id for u in uow.directory_users.list("ldap")}
    assert synced == expected and 0 < len(expected) < len(small.people)
