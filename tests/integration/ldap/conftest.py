"""A private slapd for the LDAP tests (session scope), and per-test directories in it.

The session slapd is bulk-loaded with one large directory of each flavor (``ou=big``:
thousands of users, groups nested four deep, a cycle, disabled users, DNs that need
escaping). Tests that change the directory add their own small OU over LDAP
(:func:`small_ad` / :func:`small_ol`), so no test sees another's writes. slapd missing is a
failure (``make system-deps``), never a skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import ldap3
import pytest

from idp_connectors.ldap import LdapSettings, LdapSync
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from tests.helpers.ldap_data import DirectoryData, Writer
from tests.slapd import AD_BASE, ADMIN_PASSWORD, OL_BASE, PrivateSlapd

BIG_USERS = 2000
BIG_GROUPS = 200


@pytest.fixture(scope="session")
def big_ad() -> DirectoryData:
    return DirectoryData("ad", "big", users=BIG_USERS, groups=BIG_GROUPS)


@pytest.fixture(scope="session")
def big_ol() -> DirectoryData:
    return DirectoryData("openldap", "big", users=BIG_USERS, groups=BIG_GROUPS)


@pytest.fixture(scope="session")
def slapd(big_ad: DirectoryData, big_ol: DirectoryData) -> Iterator[PrivateSlapd]:
    server = PrivateSlapd()
    try:
        yield server.start({AD_BASE: big_ad.ldif(), OL_BASE: big_ol.ldif()})
    finally:
        server.stop()


def settings_for(server: PrivateSlapd, data: DirectoryData, **over: Any) -> LdapSettings:
    values: dict[str, Any] = {
        "url": server.url,
        "schema": data.flavor,
        "base_dn": data.base,
        "bind_dn": f"cn=admin,{data.suffix}",
        "bind_password": ADMIN_PASSWORD,
        "ca_file": server.ca_file,
        "page_size": 250,
    }
    values.update(over)
    return LdapSettings.model_validate(values)


@pytest.fixture
def storage(sqlite_database: Database) -> SqlStorage:
    return SqlStorage(sqlite_database)


def _small(server: PrivateSlapd, flavor: str) -> DirectoryData:
    data = DirectoryData(flavor, f"t{uuid.uuid4().hex[:10]}", users=30, groups=10, disabled_every=7)
    conn = ldap3.Connection(
        ldap3.Server(server.url), f"cn=admin,{data.suffix}", ADMIN_PASSWORD, auto_bind=True
    )
    try:
        data.add_to(conn)
    finally:
        conn.unbind()
    return data


@pytest.fixture(params=["ad", "openldap"])
def small(request: pytest.FixtureRequest, slapd: PrivateSlapd) -> DirectoryData:
    """A fresh 30-user directory of each flavor, in its own OU."""
    return _small(slapd, request.param)


@pytest.fixture
def writer(slapd: PrivateSlapd, small: DirectoryData) -> Iterator[Writer]:
    w = Writer(slapd.url, small)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def make_sync(slapd: PrivateSlapd, storage: SqlStorage) -> Callable[..., LdapSync]:
    def make(data: DirectoryData, **over: Any) -> LdapSync:
        return LdapSync(settings_for(slapd, data, **over), storage)

    return make


__all__ = ["settings_for", "BIG_USERS", "BIG_GROUPS"]
