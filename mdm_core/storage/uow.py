"""The unit of work: every per-concern store bound to one transaction.

``with storage.unit_of_work() as uow:`` yields a :class:`UnitOfWork`; everything done through
``uow.<concern>`` commits together when the block exits normally and rolls back when it
raises. Domain events go to ``uow.outbox`` inside the same block, which is what makes the
outbox pattern hold.

Each concern's protocol lives in its own module beside this one; add one attribute here per
concern.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mdm_core.storage.audit import AuditStore
    from mdm_core.storage.certauth import CaKeyStore, CertificateStore
    from mdm_core.storage.compliance import ComplianceStore
    from mdm_core.storage.credentials import AllCredentials
    from mdm_core.storage.devices import DeviceStore
    from mdm_core.storage.directory import (
        DirectoryGroupStore,
        DirectoryUserStore,
        MembershipStore,
    )
    from mdm_core.storage.directory_claims import SourceClaimStore
    from mdm_core.storage.enrollment import EnrollmentTokenStore, RegisteredSerialStore
    from mdm_core.storage.identity import DeviceIdentityStore
    from mdm_core.storage.identity_links import IdentityLinkStore
    from mdm_core.storage.outbox import OutboxStore
    from mdm_core.storage.posture import PostureStore
    from mdm_core.storage.queue import CommandStore
    from mdm_core.storage.replay import ReplayStore
    from mdm_core.storage.scim import ScimResourceStore
    from mdm_core.storage.staleness import StalePostureStore
    from mdm_core.storage.sync_state import LeaseStore, SourceEntryStore, SyncCursorStore
    from mdm_core.storage.wipe_requests import WipeRequestStore

__all__ = ["UnitOfWork", "Storage"]


class UnitOfWork(Protocol):
    """Per-concern stores sharing one transaction. One read-only property per concern."""

    @property
    def outbox(self) -> OutboxStore: ...
    @property
    def posture(self) -> PostureStore: ...
    @property
    def commands(self) -> CommandStore: ...
    @property
    def devices(self) -> DeviceStore: ...
    @property
    def identities(self) -> DeviceIdentityStore: ...
    @property
    def certificates(self) -> CertificateStore: ...
    @property
    def ca_keys(self) -> CaKeyStore: ...
    @property
    def enrollment_tokens(self) -> EnrollmentTokenStore: ...
    @property
    def serials(self) -> RegisteredSerialStore: ...
    @property
    def replay(self) -> ReplayStore: ...
    @property
    def audit(self) -> AuditStore: ...
    @property
    def directory_users(self) -> DirectoryUserStore: ...
    @property
    def directory_groups(self) -> DirectoryGroupStore: ...
    @property
    def memberships(self) -> MembershipStore: ...
    @property
    def source_claims(self) -> SourceClaimStore: ...
    @property
    def compliance(self) -> ComplianceStore: ...
    @property
    def credentials(self) -> AllCredentials: ...
    @property
    def identity_links(self) -> IdentityLinkStore: ...
    @property
    def source_entries(self) -> SourceEntryStore: ...
    @property
    def sync_cursors(self) -> SyncCursorStore: ...
    @property
    def leases(self) -> LeaseStore: ...
    @property
    def scim_resources(self) -> ScimResourceStore: ...
    @property
    def stale_postures(self) -> StalePostureStore: ...
    @property
    def wipe_requests(self) -> WipeRequestStore: ...

    def call_after(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` after this unit of work ends, committed or rolled back (for work
        that must survive a rollback, e.g. auditing a refusal, or must wait for the commit
        to release locks). A callback that raises is logged, not propagated."""
        ...


class Storage(Protocol):
    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        """A new transaction: committed on normal exit, rolled back if the block raises."""
        ...
