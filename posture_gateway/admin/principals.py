"""Who is calling the admin API: a named admin and their role.

Two roles: ``helpdesk`` (view devices and commands, lock) and ``admin`` (everything a
helpdesk may do, plus wipe, selective wipe, retire, approve, cancel, offboard). The audit
actor of a named admin is ``admin:<name>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Role", "AdminPrincipal", "ADMIN_NAME", "valid_admin_name"]

#: An admin's name (the actor is ``admin:<name>``).
ADMIN_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Role(StrEnum):
    HELPDESK = "helpdesk"
    ADMIN = "admin"


_RANK = {Role.HELPDESK: 1, Role.ADMIN: 2}


def valid_admin_name(name: str) -> bool:
    return ADMIN_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class AdminPrincipal:
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"

    def may(self, role: Role) -> bool:
        """True when this admin's role includes ``role`` (admin includes helpdesk)."""
        return _RANK[self.role] >= _RANK[role]
