"""Which directory user an HR event is about: by email (several matches: ambiguous; none:
the same value tried as a username), by username, or by user id, in the mirror
(:mod:`mdm_core.storage.directory`). No match is an outcome, never a guess."""

from __future__ import annotations

from dataclasses import dataclass

from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.uow import UnitOfWork
from posture_gateway.hr.events import HrEvent

__all__ = ["Match", "match_user"]


@dataclass(frozen=True, slots=True)
class Match:
    user: DirectoryUser | None
    outcome: str | None  # None (matched) | unmatched | ambiguous
    candidates: int


def match_user(uow: UnitOfWork, event: HrEvent) -> Match:
    value = event.match_value
    if not value:
        return Match(None, "unmatched", 0)
    users = uow.directory_users
    if event.match_attribute == "user_id":
        found = users.get(value)
        return Match(found, None if found else "unmatched", int(found is not None))
    if event.match_attribute == "email":
        many = users.find_by_email(value)
        if len(many) > 1:
            return Match(None, "ambiguous", len(many))
        if many:
            return Match(many[0], None, 1)
    found = users.find_by_username(value)
    return Match(found, None if found else "unmatched", int(found is not None))
