"""Full-wipe requests (the two-person rule): the store contract.

A device has at most one *open* request at a time, enforced by the database (a unique
column set while the request is open): :meth:`WipeRequestStore.create` of a second one
returns the open one instead, even when two callers race. A request is open while it waits
for approval, and while its queued ``wipe`` command may still reach the device; the service
(:mod:`mdm_core.device.wipes`) closes it when it is rejected or cancelled, or when its command
has ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from mdm_core.device.wipe_model import WipeRequest, WipeRequestStatus

__all__ = ["WipeRequestStore"]


class WipeRequestStore(Protocol):
    def create(self, request: WipeRequest) -> tuple[WipeRequest, bool]:
        """Insert ``request`` as the device's open request: ``(request, True)``; when the
        device already has an open one (also one a concurrent transaction just committed),
        nothing is inserted and ``(that one, False)`` is returned."""
        ...

    def get(self, request_id: str, *, lock: bool = False) -> WipeRequest | None:
        """The request, or ``None``. With ``lock``, the row is held until the unit of work
        ends (``FOR UPDATE`` on PostgreSQL, the write lock on SQLite), so two approvals of
        one request are serialised."""
        ...

    def open_for_device(self, device_id: str) -> WipeRequest | None:
        """The device's open request, or ``None``."""
        ...

    def update(
        self,
        request_id: str,
        *,
        status: WipeRequestStatus,
        approvals: tuple[str, ...],
        command_id: str | None,
        at: datetime,
        still_open: bool,
        closed_by: str | None = None,
        close_reason: str | None = None,
    ) -> WipeRequest:
        """Write the request's new state; ``still_open=False`` frees the device for a new
        request. Raises :class:`mdm_core.device.wipe_model.WipeRequestNotFound` for an unknown
        id."""
        ...

    def list(
        self,
        *,
        device_id: str | None = None,
        status: WipeRequestStatus | None = None,
        limit: int = 100,
    ) -> list[WipeRequest]:
        """Requests, newest first, filtered by device and/or status; ``[]`` when none."""
        ...
