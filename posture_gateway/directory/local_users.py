"""The local users file as a directory source: its users (and groups) in the mirror.

Without it nobody could sign in on a fresh install: a local password login names a user id
that the decision then looks up in the directory mirror, and an unknown user is refused
(``user_unknown``). At start-up :func:`sync_users_file` upserts every user of
``oidc.users_file`` (id, username, email, name, groups) with source ``users_file``;
a user removed from the file is disabled in the mirror, and records of other sources
(``import``, LDAP, SCIM) are never touched. Idempotent: a second start changes nothing.
Several workers starting at once may race on the first insert; the loser retries.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mdm_core.directory.precedence import SourceOfTruth
from mdm_core.directory.sync import SourceUser, SyncSummary, sync_source
from mdm_core.domain.errors import Conflict
from mdm_core.storage.uow import Storage
from posture_gateway.oidc.local_users import UserConfig
from posture_gateway.oidc.yamlconf import load_entries
from posture_gateway.settings import ConfigError

__all__ = ["USERS_FILE_SOURCE", "sync_users_file", "source_users"]

log = logging.getLogger(__name__)

#: The ``source`` tag of mirror records that come from the local users file.
USERS_FILE_SOURCE = "users_file"
_ATTEMPTS = 3


def source_users(users: list[UserConfig]) -> list[SourceUser]:
    return [
        SourceUser(
            id=u.user_id,
            username=u.username,
            email=u.email,
            display_name=u.name,
            groups=tuple(u.groups),
        )
        for u in users
    ]


def sync_users_file(
    storage: Storage, path: Path | None, *, source_of_truth: SourceOfTruth | None = None
) -> SyncSummary:
    """Mirror ``path``'s users (none when ``None``: every file user is then disabled).

    A user whose id belongs to another source, or whose username belongs to another user,
    is skipped and logged: that person cannot sign in (fail closed), everyone else can.
    Raises :class:`ConfigError` only if the sync keeps failing (after a lost start-up race).
    """
    users = [e.value for e in load_entries(path, "users", UserConfig)] if path else []
    wanted = source_users(users)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            summary = sync_source(
                storage,
                USERS_FILE_SOURCE,
                wanted,
                prune=True,
                skip_conflicts=True,
                source_of_truth=source_of_truth,
            )
        except Conflict as exc:
            if attempt == _ATTEMPTS:
                raise ConfigError(
                    f"oidc.users_file: cannot put its users into the directory: {exc.message}"
                ) from exc
            continue  # another worker inserted the same rows first: the next pass sees them
        for skipped in summary.skipped:
            log.warning("users file user not mirrored: %s", skipped)
        for ignored in summary.ignored:
            log.info("users file value not applied (source of truth): %s", ignored)
        if summary.touched:
            log.info(
                "users file -> directory: %d added, %d changed, %d disabled, %d skipped",
                len(summary.added),
                len(summary.changed),
                len(summary.disabled),
                len(summary.skipped),
            )
        return summary
    raise AssertionError("unreachable")  # pragma: no cover
