"""The unit of work: every per-concern store bound to one transaction.

``with storage.unit_of_work() as uow:`` yields a :class:`UnitOfWork`; everything done through
``uow.<concern>`` commits together when the block exits normally and rolls back when it
raises. Domain events go to ``uow.outbox`` inside the same block, which is what makes the
outbox pattern hold.

Each concern's protocol lives in its own module beside this one; add one attribute here per
concern.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mdm_core.storage.compliance import ComplianceStore
    from mdm_core.storage.directory import (
        DirectoryGroupStore,
        DirectoryUserStore,
        MembershipStore,
    )
    from mdm_core.storage.outbox import OutboxStore
    from mdm_core.storage.posture import PostureStore
    from mdm_core.storage.queue import CommandStore

__all__ = ["UnitOfWork", "Storage"]


class UnitOfWork(Protocol):
    """Per-concern stores sharing one transaction. Attributes are added per concern."""

    directory_users: DirectoryUserStore
    directory_groups: DirectoryGroupStore
    memberships: MembershipStore
    compliance: ComplianceStore
    outbox: OutboxStore
    posture: PostureStore
    commands: CommandStore


class Storage(Protocol):
    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        """A new transaction: committed on normal exit, rolled back if the block raises."""
        ...
