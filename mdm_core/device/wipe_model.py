"""Full-wipe requests: the record, its statuses and the errors of the two-person rule.

Shared by the wipe service (:mod:`mdm_core.device.wipes`, which re-exports all of it) and
the store protocol (:mod:`mdm_core.storage.wipe_requests`); it imports no storage module, so
the service -> unit of work -> store protocol -> record chain has no cycle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from mdm_core.domain.errors import Conflict, NotFound

__all__ = [
    "WipeRequestStatus",
    "WipeRequest",
    "ApprovalRequired",
    "SameApprover",
    "WipeRequestNotFound",
    "WipeRequestClosed",
    "is_human_admin",
]

#: ``admin:<name>``: the only actors that count as a signature under the two-person rule.
_HUMAN_ADMIN = re.compile(r"admin:[a-z0-9][a-z0-9._-]{0,63}")


def is_human_admin(actor: str) -> bool:
    """``True`` for a named human admin (``admin:<name>``), ``False`` for every automatic
    caller (``offboarding:<job>``, ``hr:*``, ``directory:*``, ``operator:*``, ``system``)."""
    return isinstance(actor, str) and _HUMAN_ADMIN.fullmatch(actor) is not None


class WipeRequestStatus(StrEnum):
    #: Waiting for a second, different admin (the two-person rule).
    PENDING_APPROVAL = "pending_approval"
    #: The ``wipe`` command is queued (``command_id``); its own status tells the rest.
    QUEUED = "queued"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class WipeRequest:
    id: str
    device_id: str
    user_id: str
    status: WipeRequestStatus
    requested_by: str
    reason: str
    #: The human admins who signed, in order (the requester first when it is one).
    approvals: tuple[str, ...]
    command_id: str | None
    created_at: datetime
    updated_at: datetime
    #: Who rejected or cancelled it and why (``None`` while open).
    closed_by: str | None = None
    close_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device_id": self.device_id,
            "user_id": self.user_id,
            "status": self.status.value,
            "requested_by": self.requested_by,
            "reason": self.reason,
            "approvals": list(self.approvals),
            "command_id": self.command_id,
            "closed_by": self.closed_by,
            "close_reason": self.close_reason,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


class ApprovalRequired(Conflict):
    """The approval does not count: only a named human admin (``admin:<name>``) signs."""

    reason = "second_admin_required"


class SameApprover(ApprovalRequired):
    """This admin already signed the request: a second, different admin must approve."""

    reason = "second_admin_required"


class WipeRequestNotFound(NotFound):
    reason = "unknown_wipe_request"


class WipeRequestClosed(Conflict):
    """The request is no longer waiting for approval (queued, rejected or cancelled)."""

    reason = "wipe_request_closed"
