"""What each directory source last said about each user (the input of the source of truth).

Several sources (the local users file, ``posture directory import``, LDAP, SCIM) may describe
the same person. Each sync records its own view of every user it lists as one *claim* (a
JSON object of attribute -> value: ``username``, ``email``, ``display_name``, ``active``,
``groups``); :mod:`mdm_core.directory.precedence` resolves the mirror record from the claims
attribute by attribute, so a lower-priority source never overwrites a higher one's value.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, Protocol

__all__ = ["SourceClaimStore"]


class SourceClaimStore(Protocol):
    def put(self, user_id: str, source: str, claims: Mapping[str, Any], *, at: datetime) -> bool:
        """Record ``source``'s claims about ``user_id`` (replacing its previous ones);
        ``True`` if anything changed (new, or different claims), ``False`` when identical."""
        ...

    def claimed(self, user_ids: Collection[str]) -> set[str]:
        """Which of ``user_ids`` any source has claims about (one read for many users)."""
        ...

    def put_new(
        self, source: str, claims: Mapping[str, Mapping[str, Any]], *, at: datetime
    ) -> None:
        """Insert ``source``'s claims about users nobody has claims about yet (checked with
        :meth:`claimed`), ``user_id -> claims``, in one statement."""
        ...

    def for_user(self, user_id: str) -> dict[str, dict[str, Any]]:
        """Every source's claims about the user, ``source -> claims``; ``{}`` for an unknown
        user or one no source has claimed."""
        ...

    def remove(self, user_id: str, source: str) -> bool:
        """Forget ``source``'s claims about the user; ``False`` if it had none."""
        ...

    def users(self, source: str) -> list[str]:
        """Ids of the users ``source`` has claims about, sorted; ``[]`` when none."""
        ...
