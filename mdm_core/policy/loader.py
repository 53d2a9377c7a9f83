"""Loading a policy directory: every YAML file under it, validated and compiled together.

``check_policy_directory`` returns the compiled set or every problem; it never raises for a
mistake in the files. ``load_policy_directory`` raises :class:`PolicyValidationError`.
File names in problems are shown as given (``policies/compliance.yaml``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.compiler import compile_documents
from mdm_core.policy.errors import PolicyValidationError, Problem
from mdm_core.policy.source import SourceDocument, policy_files, read_policy_file

__all__ = [
    "check_policy_directory",
    "load_policy_directory",
    "directory_stamp",
    "unknown_group_references",
]


def check_policy_directory(
    directory: Path,
    *,
    known_groups: Collection[str] | None = None,
    now: datetime | None = None,
) -> tuple[CompiledPolicySet | None, list[Problem]]:
    """Validate and compile ``directory``: ``(set, [])`` or ``(None, problems)``."""
    now = now or datetime.now(UTC)
    if not directory.is_dir():
        return None, [Problem(str(directory), 1, "policy directory does not exist")]
    files = policy_files(directory)
    if not files:
        return None, [Problem(str(directory), 1, "no policy files (*.yaml, *.yml) found")]
    digest = hashlib.sha256()
    documents: list[SourceDocument] = []
    problems: list[Problem] = []
    for path in files:
        display = str(path)
        try:
            digest.update(display.encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError:
            pass  # read_policy_file reports it
        docs, file_problems = read_policy_file(path, display)
        documents.extend(docs)
        problems.extend(file_problems)
    compiled, compile_problems = compile_documents(
        documents,
        known_groups=known_groups,
        fingerprint=digest.hexdigest(),
        files=tuple(str(p) for p in files),
        now=now,
    )
    problems.extend(compile_problems)
    if problems:
        return None, sorted(set(problems))
    return compiled, []


def load_policy_directory(
    directory: Path,
    *,
    known_groups: Collection[str] | None = None,
    now: datetime | None = None,
) -> CompiledPolicySet:
    """Like :func:`check_policy_directory` but raises :class:`PolicyValidationError`."""
    compiled, problems = check_policy_directory(directory, known_groups=known_groups, now=now)
    if compiled is None:
        raise PolicyValidationError(problems)
    return compiled


def directory_stamp(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """A cheap change detector: (path, mtime_ns, size) of every policy file."""
    stamp: list[tuple[str, int, int]] = []
    if not directory.is_dir():
        return ()
    for path in policy_files(directory):
        try:
            st = path.stat()
        except OSError:
            continue
        stamp.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(stamp)


def unknown_group_references(
    policies: CompiledPolicySet, known_groups: Collection[str]
) -> list[Problem]:
    """Group names the set's assignments use that the directory mirror does not know, one
    problem per (policy, group), located at the policy's document."""
    known = frozenset(known_groups)
    found: list[Problem] = []
    assigned = [
        *((p.id, p.assign, p.file, p.line) for p in policies.compliance),
        *((p.id, p.assign, p.file, p.line) for p in policies.configuration),
        *((p.id, p.assign, p.file, p.line) for p in policies.offboarding),
    ]
    for policy_id, assign, file, line in assigned:
        for group in sorted(assign.groups or ()):
            if group not in known:
                found.append(
                    Problem(
                        file,
                        line,
                        f"policy {policy_id!r} targets unknown group {group!r} "
                        "(not in the directory mirror): it applies to nobody in it",
                    )
                )
    return sorted(found)
