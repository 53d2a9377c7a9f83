"""The store contract of offboarding: jobs, their devices, and the users they block.

``uow.offboarding`` (:class:`OffboardingStore`). Every method runs in the caller's unit of
work. Inserts never raise on a duplicate: they answer ``False`` and write nothing, so a
concurrent second trigger finds the first one's row instead of aborting its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from mdm_core.offboarding.model import (
    DeviceState,
    JobDevice,
    JobStatus,
    OffboardingJob,
    UserBlock,
)

__all__ = ["OffboardingStore"]


class OffboardingStore(Protocol):
    # --- jobs -------------------------------------------------------------------------------

    def add_job(self, job: OffboardingJob) -> bool:
        """Insert ``job``; ``False`` (nothing written) when the user already has an open
        (scheduled or running) job or ``(trigger, source_ref)`` was used already."""
        ...

    def get(self, job_id: str, *, lock: bool = False) -> OffboardingJob | None:
        """The job, ``None`` when unknown. ``lock``: the row is held until the unit of work
        ends (``FOR UPDATE`` on PostgreSQL, the database write lock on SQLite)."""
        ...

    def open_for_user(self, user_id: str) -> OffboardingJob | None:
        """The user's scheduled or running job, ``None`` when there is none."""
        ...

    def by_source(self, trigger: str, source_ref: str) -> OffboardingJob | None:
        """The job ``(trigger, source_ref)`` created, ``None`` when none did."""
        ...

    def for_user(self, user_id: str) -> list[OffboardingJob]:
        """Every job of the user, oldest first; ``[]`` when none."""
        ...

    def update_job(
        self,
        job_id: str,
        *,
        expected: JobStatus,
        status: JobStatus,
        at: datetime,
        effective_at: datetime | None = None,
        groups: Sequence[str] | None = None,
        username: str | None = None,
    ) -> bool:
        """Move the job from ``expected`` to ``status`` (a closed status frees the user's
        open slot; ``running`` sets ``started_at``, ``done`` and ``cancelled``
        ``finished_at``); ``False`` (nothing written) when it is not in ``expected``."""
        ...

    def due(self, now: datetime, limit: int) -> list[str]:
        """Ids of scheduled jobs whose ``effective_at`` is ``<= now``, earliest first."""
        ...

    def advanceable(self, limit: int) -> list[tuple[str, str]]:
        """``(job_id, device_id)`` of running jobs' non-final devices that may have moved:
        their command is final (acknowledged, error, cancelled), their wipe request waits
        for approval, or the device is retired, wiped or gone."""
        ...

    def finishable(self, limit: int) -> list[str]:
        """Ids of running jobs whose every device is final (or that have none)."""
        ...

    # --- devices ----------------------------------------------------------------------------

    def add_device(self, device: JobDevice) -> bool:
        """Insert the job's row for a device; ``False`` (nothing written) when it exists."""
        ...

    def devices(self, job_id: str) -> list[JobDevice]:
        """The job's devices, by device id; ``[]`` for an unknown job."""
        ...

    def device(self, job_id: str, device_id: str) -> JobDevice | None: ...

    def update_device(
        self,
        job_id: str,
        device_id: str,
        *,
        expected: DeviceState,
        state: DeviceState,
        at: datetime,
        command_id: str | None = None,
        detail: str | None = None,
    ) -> bool:
        """Move one device row from ``expected`` to ``state`` (``command_id``, ``detail``
        set when given); ``False`` when it is not in ``expected``."""
        ...

    # --- blocks -----------------------------------------------------------------------------

    def block(self, block: UserBlock) -> bool:
        """Block the user's logins and enrollment; ``False`` when already blocked."""
        ...

    def unblock(self, user_id: str) -> bool:
        """Lift the block; ``False`` when the user was not blocked."""
        ...

    def blocked(self, user_id: str) -> UserBlock | None:
        """The user's block, ``None`` when not blocked (one primary-key read)."""
        ...
