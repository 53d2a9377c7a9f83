"""Maps identities asserted by outside systems onto users of the directory mirror.

Implements :class:`idp_connectors.identity.UserDirectory` on ``mdm_core``'s directory: the
Okta hook, the posture API, Entra and upstream IdPs name a user by username or email; this
answers our directory user id, or ``None`` for an unknown or disabled user (who then gets
no access anywhere).
"""

from __future__ import annotations

from idp_connectors.identity import ExternalIdentity
from mdm_core.storage.uow import Storage

__all__ = ["DirectoryUserResolver"]


class DirectoryUserResolver:
    """Username first, then a *verified* email used as a username; disabled users: None."""

    def __init__(self, storage: Storage) -> None:
        if storage is None:
            raise ValueError("DirectoryUserResolver needs a storage")
        self._storage = storage

    def resolve(self, identity: ExternalIdentity) -> str | None:
        candidates: list[str] = []
        if identity.username:
            candidates.append(identity.username)
        if identity.email and identity.email_verified:
            candidates.append(identity.email)
        with self._storage.unit_of_work() as uow:
            for name in candidates:
                user = uow.directory_users.find_by_username(name)
                if user is not None:
                    return user.id if user.active else None
        return None
