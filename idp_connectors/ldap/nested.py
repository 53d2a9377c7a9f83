"""Nested groups: AD's in-chain rule where the server has it, cycle-safe expansion otherwise.

Active Directory evaluates transitive membership itself with the matching rule
``LDAP_MATCHING_RULE_IN_CHAIN`` (1.2.840.113556.1.4.1941):
``(memberOf:1.2.840.113556.1.4.1941:=<group DN>)`` finds every user in the group through any
depth of nesting. Support is detected, not assumed: :func:`supports_in_chain` reads the
rootDSE's ``subschemaSubentry`` and looks for the rule's OID among its ``matchingRules``
(what AD publishes; OpenLDAP lists only its own rules, so it falls back).

Without it, :func:`transitive_users` expands the group graph the sync has already read,
breadth first, visiting each group once: a nesting cycle (A in B in A) terminates, and depth
is bounded by :data:`MAX_DEPTH`.

The mirror stores only *direct* memberships (its resolution is transitive and cycle safe
too, :mod:`mdm_core.directory.mirror`); expansion here decides the sync's scope
(``required_group``: only users in that group, at any depth, are synced).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from idp_connectors.ldap.client import LdapSession
from idp_connectors.ldap.filters import IN_CHAIN_RULE, equals
from idp_connectors.ldap.schema import LdapGroup

__all__ = ["supports_in_chain", "transitive_users", "in_chain_filter", "MAX_DEPTH"]

MAX_DEPTH = 64


def supports_in_chain(session: LdapSession) -> bool:
    """Whether the server publishes the in-chain matching rule in its subschema."""
    root = session.read("", ["subschemaSubentry"])
    subschema = (root or {}).get("subschemaSubentry") or [b"cn=Subschema"]
    schema = session.read(subschema[0].decode("utf-8"), ["matchingRules"])
    if schema is None:
        return False
    needle = f"( {IN_CHAIN_RULE} ".encode()
    return any(rule.startswith(needle) for rule in schema.get("matchingRules", ()))


def in_chain_filter(group_dn: str) -> str:
    """Users in ``group_dn`` at any depth, evaluated by the server (the DN is escaped)."""
    return equals("memberOf", group_dn, rule=IN_CHAIN_RULE)


def transitive_users(
    groups: Mapping[str, LdapGroup], root_dn: str, user_dns: Collection[str]
) -> set[str]:
    """DNs of ``user_dns`` reachable from the group ``root_dn`` through ``member`` links
    (lower-case DNs; each group visited once, so cycles terminate)."""
    found: set[str] = set()
    seen = {root_dn.lower()}
    frontier = [root_dn.lower()]
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        following: list[str] = []
        for dn in frontier:
            group = groups.get(dn)
            if group is None:
                continue
            for member in group.members:
                if member in groups:
                    if member not in seen:
                        seen.add(member)
                        following.append(member)
                elif member in user_dns:
                    found.add(member)
        frontier = following
    return found
