"""Merging reports from several sources of one device into one posture.

Some devices report through two channels: an iPhone answers MDM queries (``apple`` format:
OS, encryption, passcode) while its companion app reports what MDM cannot see (``agent``
format: jailbreak detection). Each report alone is partial; the device's posture is both.

Rule: a report of format F sets every field it established. A field it did not establish
keeps its previous value only when that value came from ANOTHER format G, and G reported no
longer than ``max_age`` before this report. Within one format nothing is ever carried over:
a source that stops establishing a field makes it ``None`` (never a stale guess). The merged
posture's ``collected_at`` is the oldest contributing report's, so its age is honest.

:class:`PostureSources` records which format established each field and when each format
last reported; it is stored beside the latest posture.

A signed posture snapshot carried by a login proof is not a new source but a fresher look
at the device: :func:`overlay_snapshot` lays it over the stored posture. What the snapshot
established wins; every field it did not establish keeps the stored value, so a snapshot can
never replace reported evidence with nothing. When anything is carried, ``collected_at`` is
the stored report's (the oldest evidence in the result), so a carried value never looks
fresher than the report that established it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mdm_core.posture.model import POSTURE_FIELDS, Posture

__all__ = ["PostureSources", "merge_reports", "overlay_snapshot", "DEFAULT_SOURCE_MAX_AGE"]

DEFAULT_SOURCE_MAX_AGE = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class PostureSources:
    fields: dict[str, str] = field(default_factory=dict)  # posture field -> report format
    formats: dict[str, datetime] = field(default_factory=dict)  # format -> its collected_at

    def to_json(self) -> dict[str, Any]:
        return {
            "fields": dict(sorted(self.fields.items())),
            "formats": {k: v.isoformat() for k, v in sorted(self.formats.items())},
        }

    @classmethod
    def from_json(cls, data: Any) -> PostureSources | None:
        """Parse a stored value; ``None`` for anything that is not a sources document."""
        if not isinstance(data, dict):
            return None
        fields, formats = data.get("fields"), data.get("formats")
        if not isinstance(fields, dict) or not isinstance(formats, dict):
            return None
        try:
            parsed = {str(k): datetime.fromisoformat(str(v)) for k, v in formats.items()}
        except ValueError:
            return None
        return cls({str(k): str(v) for k, v in fields.items()}, parsed)


def _established(value: object) -> bool:
    return value is not None and value != ()


def merge_reports(
    previous: Posture | None,
    previous_sources: PostureSources | None,
    current: Posture,
    fmt: str,
    *,
    max_age: timedelta = DEFAULT_SOURCE_MAX_AGE,
) -> tuple[Posture, PostureSources]:
    """The device's posture after ``current`` (a report of format ``fmt``), and its sources."""
    fields = {name: fmt for name in POSTURE_FIELDS if _established(getattr(current, name))}
    formats = {fmt: current.collected_at}
    carried: dict[str, Any] = {}
    if previous is not None and previous_sources is not None:
        for name, source in previous_sources.fields.items():
            if name in fields or source == fmt or name not in POSTURE_FIELDS:
                continue
            reported = previous_sources.formats.get(source)
            if reported is None or current.collected_at - reported > max_age:
                continue
            value = getattr(previous, name)
            if not _established(value):
                continue
            carried[name] = value
            fields[name] = source
            formats[source] = reported
    if not carried:
        return current, PostureSources(fields, formats)
    merged = current.model_copy(update={**carried, "collected_at": min(formats.values())})
    return merged, PostureSources(fields, formats)


def overlay_snapshot(stored: Posture | None, snapshot: Posture) -> Posture:
    """``snapshot`` over ``stored``: the snapshot's established fields, the stored value of
    every other field, and the older ``collected_at`` when anything was carried."""
    if stored is None or stored.platform is not snapshot.platform:
        return snapshot
    carried = {
        name: getattr(stored, name)
        for name in POSTURE_FIELDS
        if not _established(getattr(snapshot, name)) and _established(getattr(stored, name))
    }
    if not carried:
        return snapshot
    collected_at = min(stored.collected_at, snapshot.collected_at)
    return snapshot.model_copy(update={**carried, "collected_at": collected_at})
