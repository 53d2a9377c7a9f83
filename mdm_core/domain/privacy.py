"""Privacy by construction: one profile per ownership decides what is collected and kept.

A privacy profile (``policies/privacy/*.yaml``, ``kind: PrivacyProfile``) drives three things:

1. what the agent is told to send: the check-in answer carries ``collect`` (field names);
2. what the server keeps: the normaliser reads only these fields, and :meth:`PrivacyProfile.apply`
   drops anything else again before a posture reaches the store, the history, the outbox or
   the audit log;
3. the transparency notice shown before (BYOD) enrolment: :meth:`PrivacyProfile.notice`,
   served as ``GET /mdm/v1/privacy-notice?ownership=byod`` and rendered by the gateway page.

File format::

    kind: PrivacyProfile
    id: byod-default
    ownership: byod            # corporate | byod
    description: optional text
    collect: [os_version, storage_encrypted, ...]   # names from Posture (POSTURE_FIELDS)
    notice:
      can_see: ["Operating system version", ...]
      cannot_see: ["Your personal apps", "Location", ...]

A file that does not validate is refused with ``file:line: reason`` for every problem. An
ownership with no profile file falls back to :data:`FALLBACK_COLLECT` (security state only:
no identifiers, no app lists, no location), so a missing file never widens collection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mdm_core.domain.errors import MdmError
from mdm_core.posture.model import POSTURE_FIELDS, SECURITY_FIELDS, Ownership, Posture

__all__ = [
    "FIELD_LABELS",
    "FALLBACK_COLLECT",
    "PrivacyNotice",
    "PrivacyProfile",
    "PrivacyProfileError",
    "PrivacyProfiles",
    "load_privacy_profile",
]

log = logging.getLogger(__name__)

#: Human label of every posture field, for the notice's exact list of what is collected.
FIELD_LABELS: dict[str, str] = {
    "os_version": "Operating system version",
    "os_build": "Operating system build",
    "security_patch_level": "Security patch level",
    "storage_encrypted": "Whether storage is encrypted",
    "passcode_set": "Whether a passcode is set",
    "passcode_min_length": "Minimum passcode length",
    "jailbroken": "Whether the device is jailbroken or rooted",
    "screen_lock_enabled": "Whether the screen lock is on",
    "screen_lock_timeout_s": "Screen lock timeout",
    "firewall_enabled": "Whether the firewall is on",
    "secure_boot": "Whether secure boot is on",
    "agent_present": "Whether the management agent is running",
    "mdm_profile_present": "Whether the management profile is installed",
    "work_profile_present": "Whether the work profile is present",
    "agent_version": "Management agent version",
    "model": "Device model",
    "serial_number": "Serial number",
    "hostname": "Device name",
    "managed_apps": "Apps installed by your organisation (work apps)",
    "installed_apps": "Every installed app, including personal apps",
    "managed_certificates": "Certificates installed by your organisation (work certificates)",
    "location": "Device location",
}

#: Kept for an ownership that has no profile file: security state only (no app inventory).
FALLBACK_COLLECT: frozenset[str] = (SECURITY_FIELDS - {"managed_apps"}) | {"agent_version"}

_TOP_KEYS = {"kind", "id", "ownership", "description", "collect", "notice"}
_REQUIRED = ("kind", "id", "ownership", "collect", "notice")
_NOTICE_KEYS = {"can_see", "cannot_see"}
_EMPTY_LIST_FIELDS = {"managed_apps": (), "installed_apps": (), "managed_certificates": ()}


class PrivacyProfileError(MdmError):
    """A privacy profile file is invalid; ``problems`` are ``file:line: reason`` strings."""

    reason = "invalid_privacy_profile"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class PrivacyNotice:
    can_see: tuple[str, ...]
    cannot_see: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PrivacyProfile:
    id: str
    ownership: Ownership
    collect: frozenset[str]
    notice: PrivacyNotice
    description: str | None = None
    source: str = "<builtin>"

    @property
    def collect_list(self) -> list[str]:
        """The allowed fields, sorted (what the check-in answer tells the agent)."""
        return sorted(self.collect)

    def apply(self, posture: Posture) -> Posture:
        """``posture`` without every field this profile does not allow (reset to empty)."""
        drop = {
            name: _EMPTY_LIST_FIELDS.get(name)
            for name in POSTURE_FIELDS - self.collect
            if getattr(posture, name) not in (None, ())
        }
        return posture.model_copy(update=drop) if drop else posture

    def notice_document(self) -> dict[str, Any]:
        """The transparency notice as JSON: the admin's text plus the exact field list."""
        return {
            "profile": self.id,
            "ownership": self.ownership.value,
            "description": self.description,
            "can_see": list(self.notice.can_see),
            "cannot_see": list(self.notice.cannot_see),
            "collected": [
                {"field": name, "label": FIELD_LABELS.get(name, name)} for name in self.collect_list
            ],
        }


def _fallback(ownership: Ownership) -> PrivacyProfile:
    return PrivacyProfile(
        id=f"builtin-{ownership.value}",
        ownership=ownership,
        collect=FALLBACK_COLLECT,
        notice=PrivacyNotice(
            can_see=tuple(FIELD_LABELS[name] for name in sorted(FALLBACK_COLLECT)),
            cannot_see=(
                "Your personal apps",
                "Location",
                "Messages",
                "Photos",
                "Browsing history",
                "Device name and serial number",
            ),
        ),
        description="Built-in profile: security state only.",
    )


# --- loading --------------------------------------------------------------------------------


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _strings(node: Node, where: str, file: str, problems: list[str]) -> list[tuple[str, Node]]:
    if not isinstance(node, SequenceNode):
        problems.append(f"{file}:{_line(node)}: {where} must be a list")
        return []
    items: list[tuple[str, Node]] = []
    for item in node.value:
        if not isinstance(item, ScalarNode) or item.tag != "tag:yaml.org,2002:str":
            problems.append(f"{file}:{_line(item)}: {where} entries must be strings")
        else:
            items.append((str(item.value), item))
    return items


def load_privacy_profile(path: Path) -> PrivacyProfile:
    """Read and validate one profile file; raises :class:`PrivacyProfileError` listing every
    problem as ``file:line: reason``."""
    file = str(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except OSError as exc:
        raise PrivacyProfileError([f"{file}:1: cannot read: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise PrivacyProfileError([f"{file}:{line}: not valid YAML: {exc}"]) from exc
    if not isinstance(root, MappingNode):
        line = _line(root) if root is not None else 1
        raise PrivacyProfileError([f"{file}:{line}: a privacy profile must be a mapping"])
    problems: list[str] = []
    fields: dict[str, Node] = {}
    key_nodes: dict[str, Node] = {}
    for key_node, value_node in root.value:
        key = str(key_node.value)
        if key not in _TOP_KEYS:
            problems.append(f"{file}:{_line(key_node)}: unknown field {key!r}")
        elif key in fields:
            problems.append(f"{file}:{_line(key_node)}: duplicate field {key!r}")
        else:
            fields[key] = value_node
            key_nodes[key] = key_node
    for key in _REQUIRED:
        if key not in fields:
            problems.append(f"{file}:{_line(root)}: missing required field {key!r}")

    def scalar(key: str) -> str | None:
        node = fields.get(key)
        if node is None:
            return None
        if not isinstance(node, ScalarNode) or not node.value:
            problems.append(f"{file}:{_line(node)}: {key} must be a non-empty string")
            return None
        return str(node.value)

    kind = scalar("kind")
    if kind is not None and kind != "PrivacyProfile":
        problems.append(f"{file}:{_line(fields['kind'])}: kind must be PrivacyProfile")
    profile_id = scalar("id")
    description = scalar("description")
    ownership_text = scalar("ownership")
    ownership: Ownership | None = None
    if ownership_text is not None:
        try:
            ownership = Ownership(ownership_text)
        except ValueError:
            problems.append(
                f"{file}:{_line(fields['ownership'])}: ownership must be one of "
                f"{', '.join(o.value for o in Ownership)}"
            )
    collect: set[str] = set()
    if "collect" in fields:
        for name, node in _strings(fields["collect"], "collect", file, problems):
            if name not in POSTURE_FIELDS:
                problems.append(f"{file}:{_line(node)}: unknown posture field {name!r} in collect")
            elif name in collect:
                problems.append(f"{file}:{_line(node)}: {name!r} listed twice in collect")
            collect.add(name)
    notice: dict[str, list[str]] = {"can_see": [], "cannot_see": []}
    notice_node = fields.get("notice")
    if notice_node is not None:
        if not isinstance(notice_node, MappingNode):
            problems.append(f"{file}:{_line(notice_node)}: notice must be a mapping")
        else:
            for key_node, value_node in notice_node.value:
                key = str(key_node.value)
                if key not in _NOTICE_KEYS:
                    problems.append(f"{file}:{_line(key_node)}: unknown field 'notice.{key}'")
                    continue
                notice[key] = [
                    text for text, _ in _strings(value_node, f"notice.{key}", file, problems)
                ]
            if not notice["cannot_see"]:
                line = _line(key_nodes["notice"])
                problems.append(f"{file}:{line}: notice.cannot_see must be listed")
    if problems:
        raise PrivacyProfileError(problems)
    assert profile_id is not None and ownership is not None
    return PrivacyProfile(
        id=profile_id,
        ownership=ownership,
        collect=frozenset(collect),
        notice=PrivacyNotice(tuple(notice["can_see"]), tuple(notice["cannot_see"])),
        description=description,
        source=file,
    )


def _load_dir(directory: Path) -> dict[Ownership, PrivacyProfile]:
    profiles: dict[Ownership, PrivacyProfile] = {}
    problems: list[str] = []
    paths: Iterable[Path] = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
    for path in paths:
        try:
            profile = load_privacy_profile(path)
        except PrivacyProfileError as exc:
            problems.extend(exc.problems)
            continue
        other = profiles.get(profile.ownership)
        if other is not None:
            problems.append(
                f"{path}:1: a second profile for ownership {profile.ownership.value!r} "
                f"(first: {other.source})"
            )
            continue
        profiles[profile.ownership] = profile
    if problems:
        raise PrivacyProfileError(problems)
    return profiles


class PrivacyProfiles:
    """The profile in force per ownership, loaded from a directory (``policies/privacy``).

    :meth:`reload` re-reads the directory; when the edited files are invalid it raises and
    the profiles in force stay as they were.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._profiles: dict[Ownership, PrivacyProfile] = {}
        self.reload()

    def reload(self) -> None:
        loaded = _load_dir(self.directory)
        for ownership in Ownership:
            if ownership not in loaded:
                log.warning(
                    "no privacy profile for %s in %s: using the built-in security-only profile",
                    ownership.value,
                    self.directory,
                )
                loaded[ownership] = _fallback(ownership)
        with self._lock:
            self._profiles = loaded

    def for_ownership(self, ownership: Ownership) -> PrivacyProfile:
        """The profile in force for ``ownership`` (never missing: see the fallback)."""
        return self._profiles[ownership]
