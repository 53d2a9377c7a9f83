"""The per-attribute source of truth of the directory mirror.

Several sources feed the mirror (``users_file``, ``import``, ``ldap``, ``scim``). The
configuration says, per user attribute, which sources are authoritative and in what order::

    directory:
      source_of_truth:
        groups: [ldap, scim, import, users_file]
        email: [scim, ldap]
        active: [ldap, scim]

:class:`SourceOfTruth` resolves one mirror record from what each source claims
(:mod:`mdm_core.storage.directory_claims`): for each attribute the value of the first listed
source that claims it wins. A source not listed for an attribute ranks below every listed
one; among unlisted sources the one syncing now wins (the last writer, which is also what an
attribute nobody configured does). A lower-priority source's value therefore never overwrites
a higher one's, and each conflict is reported as an :class:`Override`.

One exception fails closed: ``active`` decided among unlisted sources (no listed source claims
it) is ``False`` when any of them says ``False``. Without a configured order, a source that
disabled an account is never outvoted by another that still lists it as active (a SCIM client
linked to an LDAP user must not re-enable what LDAP disabled, whoever wrote last).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ATTRIBUTES", "Override", "SourceOfTruth", "SourceOfTruthError"]

#: The user attributes a source of truth can be configured for (and a source claims).
ATTRIBUTES: tuple[str, ...] = ("username", "email", "display_name", "active", "groups")

_SOURCE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class SourceOfTruthError(ValueError):
    """The ``directory.source_of_truth`` configuration is invalid (the message names the key)."""


@dataclass(frozen=True, slots=True)
class Override:
    """One attribute where two sources disagree about a user, and which one won."""

    user_id: str
    attribute: str
    winner: str
    loser: str
    winner_value: Any
    loser_value: Any

    def __str__(self) -> str:
        return (
            f"{self.user_id}.{self.attribute}: {self.winner} {_show(self.winner_value)} "
            f"over {self.loser} {_show(self.loser_value)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "attribute": self.attribute,
            "winner": self.winner,
            "loser": self.loser,
            "winner_value": self.winner_value,
            "loser_value": self.loser_value,
        }


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return repr(value)


@dataclass(frozen=True, slots=True)
class SourceOfTruth:
    """Ordered sources per attribute; ``SourceOfTruth()`` (nothing configured) means the
    last writer wins every attribute."""

    order: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Sequence[str]] | None) -> SourceOfTruth:
        """Validate a configuration mapping; raises :class:`SourceOfTruthError`."""
        order: dict[str, tuple[str, ...]] = {}
        for attribute, sources in (raw or {}).items():
            key = f"directory.source_of_truth.{attribute}"
            if attribute not in ATTRIBUTES:
                raise SourceOfTruthError(
                    f"{key}: unknown attribute; expected one of {', '.join(ATTRIBUTES)}"
                )
            if isinstance(sources, str) or not isinstance(sources, Sequence) or not sources:
                raise SourceOfTruthError(f"{key}: expected a non-empty list of source names")
            seen: list[str] = []
            for source in sources:
                if not isinstance(source, str) or not _SOURCE.match(source):
                    raise SourceOfTruthError(
                        f"{key}: {source!r} is not a source name (lower-case letters, digits, "
                        "'_' or '-', at most 32 characters)"
                    )
                if source in seen:
                    raise SourceOfTruthError(f"{key}: {source!r} is listed twice")
                seen.append(source)
            order[attribute] = tuple(seen)
        return cls(order=order)

    @property
    def configured(self) -> bool:
        return bool(self.order)

    def rank(self, attribute: str, source: str, writer: str) -> tuple[int, int, str]:
        """Sort key: listed sources by position, then the writer, then the rest by name.

        A source ``<family>:<name>`` (``scim:okta``) ranks as its family (``scim``) unless it
        is listed itself; two sources of one family rank by the writer, then by name."""
        listed = self.order.get(attribute, ())
        family = source.split(":", 1)[0]
        if source in listed:
            return (0, listed.index(source), "")
        if family in listed:
            return (0, listed.index(family), "" if source == writer else source)
        return (1, 0 if source == writer else 1, source)

    def resolve(
        self, user_id: str, claims: Mapping[str, Mapping[str, Any]], writer: str
    ) -> tuple[dict[str, Any], list[Override]]:
        """The winning value of every attribute any source claims, and the conflicts.

        ``claims`` maps source -> its claims about ``user_id``; ``writer`` is the source
        syncing now. An attribute no source claims is left out of the result."""
        resolved: dict[str, Any] = {}
        overrides: list[Override] = []
        for attribute in ATTRIBUTES:
            claimants = sorted(
                (s for s, c in claims.items() if attribute in c),
                key=lambda s: self.rank(attribute, s, writer),
            )
            if not claimants:
                continue
            winner = claimants[0]
            if attribute == "active" and self.rank(attribute, winner, writer)[0] == 1:
                winner = next((s for s in claimants if claims[s][attribute] is False), winner)
                claimants.remove(winner)
                claimants.insert(0, winner)
            value = claims[winner][attribute]
            resolved[attribute] = value
            for loser in claimants[1:]:
                other = claims[loser][attribute]
                if _norm(other) != _norm(value):
                    overrides.append(Override(user_id, attribute, winner, loser, value, other))
        return resolved, overrides


def _norm(value: Any) -> Any:
    return sorted(value) if isinstance(value, list | tuple) else value
