"""The ``ldap`` configuration section: server, TLS, bind, schema profile, attribute mapping.

Validated once by pydantic (the gateway's :class:`posture_gateway.settings.Settings` embeds
:class:`LdapSettings` as ``ldap``). The bind password comes from ``bind_password``
(``POSTURE_LDAP__BIND_PASSWORD`` in the environment) or from ``bind_password_file``; it is a
``SecretStr`` and never logged, printed or put in an error.

TLS is not optional: ``ldaps://`` URLs use LDAPS, ``ldap://`` URLs StartTLS, and the
certificate is always verified (``ca_file``, or the system trust store). Only
``allow_plaintext: true`` permits a cleartext ``ldap://`` session, and only to a loopback
address (a local test directory).

Attribute names (mapping, ``disabled_attribute``) must be LDAP attribute descriptions (letters,
digits, hyphens) or OIDs; filters in the configuration are the administrator's and are used as
written, parenthesised; values that come from anywhere else are escaped
(:mod:`idp_connectors.ldap.filters`).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from mdm_core.support.durations import DurationsModel

__all__ = ["LdapSettings", "AttributeMap", "ScheduleSettings", "ATTRIBUTE_NAME"]

#: An attribute description (RFC 4512 ``descr``) or a numeric OID.
ATTRIBUTE_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]{0,63}|[0-9]+(?:\.[0-9]+){1,30})$")


class _Strict(DurationsModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _attribute(value: str | None) -> str | None:
    if value is not None and not ATTRIBUTE_NAME.match(value):
        raise ValueError(f"{value!r} is not an LDAP attribute name")
    return value


class AttributeMap(_Strict):
    """Which LDAP attribute fills which mirror field; ``None``: the schema profile's default."""

    id: str | None = None  # AD objectGUID (binary), OpenLDAP entryUUID
    username: str | None = None  # AD sAMAccountName, OpenLDAP uid
    email: str | None = None  # mail
    display_name: str | None = None  # displayName (AD), cn (OpenLDAP)
    group_name: str | None = None  # cn
    member: str | None = None  # member
    change: str | None = None  # AD uSNChanged, OpenLDAP modifyTimestamp

    @field_validator("*")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return _attribute(value)


class ScheduleSettings(_Strict):
    # The scheduled sync inside the server (one process of all workers runs it, by lease).
    enabled: bool = False
    incremental_every: timedelta = timedelta(minutes=5)
    full_every: timedelta = timedelta(hours=24)


class LdapSettings(_Strict):
    """An LDAP or Active Directory source of the directory mirror."""

    url: str  # ldaps://dc1.example.com:636 or ldap://ldap.example.com:389 (StartTLS)
    schema_profile: Literal["ad", "openldap"] = Field(alias="schema")
    base_dn: str
    user_base: str | None = None  # default: base_dn
    group_base: str | None = None  # default: base_dn
    user_filter: str | None = None  # default: the profile's
    group_filter: str | None = None
    bind_dn: str | None = None  # None: anonymous bind (refused unless allow_anonymous)
    bind_password: SecretStr | None = None
    bind_password_file: Path | None = None
    allow_anonymous: bool = False
    ca_file: Path | None = None  # None: the system trust store
    allow_plaintext: bool = False  # only for ldap:// to a loopback address
    attributes: AttributeMap = Field(default_factory=AttributeMap)
    # A configured "disabled" attribute, instead of or besides the profile's rule: the account
    # is disabled when the attribute has one of ``disabled_values`` (case-insensitive), or,
    # with no values listed, when it is present at all.
    disabled_attribute: str | None = None
    disabled_values: tuple[str, ...] = ()
    # Only users in this group (transitively; a DN) are synced. AD: the in-chain rule when the
    # server supports it; otherwise recursive expansion of the synced groups.
    required_group: str | None = None
    nested: Literal["auto", "in_chain", "recursive"] = "auto"
    page_size: int = Field(default=1000, ge=1, le=10_000)
    timeout: timedelta = timedelta(seconds=30)
    source: str = Field(default="ldap", min_length=1, max_length=32, pattern=r"^[a-z0-9_:-]+$")
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("disabled_attribute")
    @classmethod
    def _disabled(cls, value: str | None) -> str | None:
        return _attribute(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"ldap", "ldaps"} or not parts.hostname:
            raise ValueError("url must be ldap://host[:port] or ldaps://host[:port]")
        if parts.path not in {"", "/"} or parts.query or parts.username:
            raise ValueError("url takes only a scheme, a host and a port")
        return value

    @field_validator("user_filter", "group_filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not (value.startswith("(") and value.endswith(")")) or _unbalanced(value):
            raise ValueError("a filter must be one parenthesised LDAP filter, e.g. (objectClass=x)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LdapSettings:
        if self.bind_password is not None and self.bind_password_file is not None:
            raise ValueError("give bind_password or bind_password_file, not both")
        has_password = self.bind_password is not None or self.bind_password_file is not None
        if self.bind_dn is None and not self.allow_anonymous:
            raise ValueError("bind_dn is required (or allow_anonymous: true)")
        if self.bind_dn is not None and not has_password:
            raise ValueError("bind_dn needs bind_password (POSTURE_LDAP__BIND_PASSWORD) or file")
        if self.allow_plaintext:
            parts = urlsplit(self.url)
            if parts.scheme != "ldap" or not _loopback(parts.hostname or ""):
                raise ValueError("allow_plaintext is only for ldap:// to a loopback address")
        return self

    def password(self) -> str | None:
        """The bind password (read from the file each call, so a rotated file is picked up)."""
        if self.bind_password is not None:
            return self.bind_password.get_secret_value()
        if self.bind_password_file is not None:
            try:
                return self.bind_password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(
                    f"ldap.bind_password_file: cannot read {self.bind_password_file}: "
                    f"{exc.strerror}"
                ) from None
        return None


def _unbalanced(text: str) -> bool:
    depth = 0
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return True
    return depth != 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
