"""The policy set in force, reloaded without a restart.

:class:`PolicyRepository` loads a policy directory, hands out the compiled set
(:meth:`~PolicyRepository.current`), and reloads it when a file changes (mtime polling in a
daemon thread, or an explicit :meth:`~PolicyRepository.reload`). A new set is swapped in
atomically, only when every file validates; an invalid edit is logged at ERROR with every
``file:line: reason``, exposed in :attr:`~PolicyRepository.status`, and the last valid set
stays in force. Before any valid set was loaded, :meth:`~PolicyRepository.current` raises
:class:`PolicySetUnavailable` and callers block.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.errors import PolicySetUnavailable, Problem
from mdm_core.policy.loader import (
    check_policy_directory,
    directory_stamp,
    unknown_group_references,
)

__all__ = ["PolicyRepository", "RepositoryStatus", "ReloadResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RepositoryStatus:
    """What is in force, and whether the files on disk are currently broken."""

    directory: str
    fingerprint: str | None  # of the set in force; None if none was ever valid
    loaded_at: datetime | None
    last_attempt_at: datetime | None
    errors: tuple[Problem, ...]  # of the last attempt; () when the files are valid
    warnings: tuple[Problem, ...] = ()  # e.g. groups the directory mirror does not know

    @property
    def healthy(self) -> bool:
        return self.fingerprint is not None and not self.errors


@dataclass(frozen=True, slots=True)
class ReloadResult:
    changed: bool  # a new set is in force
    problems: tuple[Problem, ...]


class PolicyRepository:
    """Thread-safe holder of the compiled policy set of ``directory``.

    ``known_groups`` returns the directory mirror's group names, or ``None`` when there is
    no mirror to check against yet. A reference to a group the mirror does not know is a
    warning by default (the policy then applies to nobody; a directory sync that drops a
    group must not freeze every policy edit or, after a restart, block everyone) and an
    error with ``strict_groups=True`` (what ``posture policy check --directory-groups``
    does).
    """

    def __init__(
        self,
        directory: Path,
        *,
        known_groups: Callable[[], Collection[str] | None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll_interval: float = 2.0,
        strict_groups: bool = False,
    ) -> None:
        self.directory = directory
        self._strict_groups = strict_groups
        self._warnings: tuple[Problem, ...] = ()
        self._known_groups = known_groups
        self._clock = clock
        self._poll_interval = poll_interval
        self._lock = threading.Lock()
        self._current: CompiledPolicySet | None = None
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._errors: tuple[Problem, ...] = ()
        self._last_attempt: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[CompiledPolicySet], None]] = []

    # -- reading --------------------------------------------------------------------------

    def current(self) -> CompiledPolicySet:
        """The set in force; raises :class:`PolicySetUnavailable` if none was ever valid."""
        current = self._current
        if current is None:
            raise PolicySetUnavailable(
                f"no valid policy set loaded from {self.directory}"
                + (f": {self._errors[0]}" if self._errors else "")
            )
        return current

    @property
    def status(self) -> RepositoryStatus:
        current = self._current
        return RepositoryStatus(
            directory=str(self.directory),
            fingerprint=current.fingerprint if current is not None else None,
            loaded_at=current.loaded_at if current is not None else None,
            last_attempt_at=self._last_attempt,
            errors=self._errors,
            warnings=self._warnings,
        )

    def on_change(self, listener: Callable[[CompiledPolicySet], None]) -> None:
        """Call ``listener`` with each newly swapped-in set (from the reloading thread)."""
        self._listeners.append(listener)

    # -- loading --------------------------------------------------------------------------

    def reload(self) -> ReloadResult:
        """Validate the directory now; swap the new set in only if it is entirely valid."""
        with self._lock:
            stamp = directory_stamp(self.directory)
            now = self._clock()
            groups = self._groups()
            compiled, problems = check_policy_directory(
                self.directory, known_groups=groups if self._strict_groups else None, now=now
            )
            warnings: list[Problem] = []
            if compiled is not None and groups is not None and not self._strict_groups:
                warnings = unknown_group_references(compiled, groups)
                if warnings:
                    log.warning(
                        "policy set references groups the directory mirror does not know:\n%s",
                        "\n".join(str(w) for w in warnings),
                    )
            self._last_attempt = now
            self._stamp = stamp
            if compiled is None:
                self._errors = tuple(problems)
                keeping = (
                    f"keeping policy set {self._current.fingerprint[:12]}"
                    if self._current is not None
                    else "NO valid policy set is loaded: every access decision blocks"
                )
                log.error(
                    "policy reload refused (%d problem(s)); %s:\n%s",
                    len(problems),
                    keeping,
                    "\n".join(str(p) for p in problems),
                )
                return ReloadResult(changed=False, problems=tuple(problems))
            self._errors = ()
            self._warnings = tuple(warnings)
            previous = self._current
            changed = previous is None or previous.fingerprint != compiled.fingerprint
            if changed:
                self._current = compiled  # one reference assignment: readers see old or new
                log.info(
                    "policy set %s in force (%d policies, %d rules, %d files)",
                    compiled.fingerprint[:12],
                    len(compiled.policy_ids),
                    compiled.rule_count(),
                    len(compiled.files),
                )
        if changed:
            for listener in list(self._listeners):
                try:
                    listener(compiled)
                except Exception:
                    log.exception("policy change listener failed")
        return ReloadResult(changed=changed, problems=())

    def poll(self) -> bool:
        """Reload if any policy file changed since the last attempt; ``True`` if reloaded."""
        if directory_stamp(self.directory) == self._stamp:
            return False
        self.reload()
        return True

    def start(self) -> None:
        """Load now (if not yet) and poll for changes in a daemon thread."""
        if self._stamp is None:
            self.reload()
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="policy-reloader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_interval):
            try:
                self.poll()
            except Exception:  # keep watching; the last valid set stays in force
                log.exception("policy directory poll failed")

    def _groups(self) -> Collection[str] | None:
        if self._known_groups is None:
            return None
        try:
            return self._known_groups()
        except Exception:
            log.warning("directory mirror unavailable: group references not checked this time")
            return None
