"""Directory triggers: an account disabled or deleted in a directory source offboards it.

:class:`DirectoryTrigger` is an outbox listener (``SqlStorage.add_outbox_listener``): for
every ``directory.account_disabled`` / ``directory.account_deleted`` event a unit of work
adds (SCIM ``active: false`` or ``DELETE``, an LDAP/AD account disabled or gone), it calls
:meth:`OffboardingService.request` in THAT unit of work, so the directory change, the job and
its at-once effects (block, revocation, device commands) commit together; an error rolls all
of them back. The trigger is ``directory:scim`` for a ``scim:*`` source, ``directory:ldap``
for the others (LDAP/AD and the other directory syncs). The event's ``groups`` (read before
the memberships were removed) pick the offboarding policy; ``source_ref`` is the event id,
so a replayed event never makes a second job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.domain.errors import NotFound

if TYPE_CHECKING:
    from mdm_core.offboarding.service import OffboardingService
    from mdm_core.storage.sql.uow import SqlUnitOfWork

__all__ = ["TRIGGER_EVENTS", "DirectoryTrigger", "trigger_for", "listener_factory"]

log = logging.getLogger(__name__)

TRIGGER_EVENTS = frozenset({EventType.ACCOUNT_DISABLED, EventType.ACCOUNT_DELETED})


def trigger_for(source: object) -> str:
    """The offboarding trigger name of a directory source (``scim:<client>``, ``ldap``...)."""
    return "directory:scim" if str(source or "").startswith("scim") else "directory:ldap"


class DirectoryTrigger:
    """One unit of work's listener (cheap for every other event)."""

    __slots__ = ("_service", "_uow")

    def __init__(self, service: OffboardingService, uow: SqlUnitOfWork) -> None:
        self._service = service
        self._uow = uow

    def events_added(self, events: Sequence[DomainEvent]) -> None:
        for event in events:
            if event.type not in TRIGGER_EVENTS:
                continue
            payload = event.payload
            trigger = trigger_for(payload.get("source"))
            username = payload.get("username")
            user_id = str(payload.get("user_id") or event.subject)
            try:
                self._service.request(
                    self._uow,
                    user_id=user_id,
                    trigger=trigger,
                    source_ref=f"{event.type}:{event.id}",
                    effective_at=None,
                    actor=trigger,
                    username=str(username) if username else None,
                    groups=frozenset(str(g) for g in payload.get("groups") or ()),
                    reason=str(payload.get("reason") or event.type),
                )
            except NotFound:  # raised before any write: not in the mirror, no device, no name
                log.info("%s for unknown user %s: nothing to offboard", event.type, user_id)


def listener_factory(service: OffboardingService) -> Callable[[SqlUnitOfWork], DirectoryTrigger]:
    """What ``SqlStorage.add_outbox_listener`` takes."""
    return lambda uow: DirectoryTrigger(service, uow)
