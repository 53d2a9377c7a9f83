"""LDAP search filters built from values that are never trusted (RFC 4515).

Every value placed in a filter goes through :func:`escape_value`: ``\\``, ``*``, ``(``, ``)``
and NUL become ``\\5c``, ``\\2a``, ``\\28``, ``\\29``, ``\\00``, and so does every byte outside
printable ASCII (a value's UTF-8 bytes are escaped one by one), so a value can only ever be
matched as itself: ``*)(uid=*`` searches for that literal string and reads nothing more.
Attribute names are checked against :data:`idp_connectors.ldap.config.ATTRIBUTE_NAME`;
filter fragments from the configuration (the administrator's) are combined as written.
"""

from __future__ import annotations

from idp_connectors.ldap.config import ATTRIBUTE_NAME

__all__ = ["escape_value", "equals", "at_least", "all_of", "any_of", "IN_CHAIN_RULE"]

#: Active Directory's LDAP_MATCHING_RULE_IN_CHAIN (transitive group membership).
IN_CHAIN_RULE = "1.2.840.113556.1.4.1941"

_SAFE = frozenset(range(0x20, 0x7F)) - {ord("\\"), ord("*"), ord("("), ord(")")}


def escape_value(value: str | bytes) -> str:
    """``value`` as an RFC 4515 assertion value: special and non-printable bytes hex-escaped."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    return "".join(chr(b) if b in _SAFE else f"\\{b:02x}" for b in data)


def _attr(name: str) -> str:
    if not ATTRIBUTE_NAME.match(name):
        raise ValueError(f"{name!r} is not an LDAP attribute name")
    return name


def equals(attribute: str, value: str | bytes, *, rule: str | None = None) -> str:
    """``(attribute=value)``, or the extensible match ``(attribute:rule:=value)``."""
    if rule is not None:
        return f"({_attr(attribute)}:{_attr(rule)}:={escape_value(value)})"
    return f"({_attr(attribute)}={escape_value(value)})"


def at_least(attribute: str, value: str) -> str:
    """``(attribute>=value)`` (ordering match: a change number or a generalized time)."""
    return f"({_attr(attribute)}>={escape_value(value)})"


def all_of(*filters: str) -> str:
    """The conjunction of already-built filters (one filter is returned as is)."""
    parts = [f for f in filters if f]
    return parts[0] if len(parts) == 1 else f"(&{''.join(parts)})"


def any_of(*filters: str) -> str:
    """The disjunction of already-built filters (one filter is returned as is)."""
    parts = [f for f in filters if f]
    return parts[0] if len(parts) == 1 else f"(|{''.join(parts)})"
