"""Privacy profiles: loading with file:line errors, filtering, notices, the fallback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mdm_core.domain.privacy import (
    FALLBACK_COLLECT,
    FIELD_LABELS,
    PrivacyProfileError,
    PrivacyProfiles,
    load_privacy_profile,
)
from mdm_core.posture.model import (
    POSTURE_FIELDS,
    InstalledApp,
    Location,
    ManagedApp,
    Ownership,
    Platform,
    Posture,
)

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "policies" / "privacy"

FULL = Posture(
    platform=Platform.ANDROID,
    collected_at=datetime(2026, 3, 1, tzinfo=UTC),
    os_version="15",
    storage_encrypted=True,
    serial_number="SER",
    hostname="alice-phone",
    managed_apps=(ManagedApp(app_id="corp.mail"),),
    installed_apps=(InstalledApp(app_id="personal.chat"),),
    location=Location(latitude=1, longitude=2),
)


def test_shipped_profiles_load() -> None:
    profiles = PrivacyProfiles(SHIPPED)
    byod = profiles.for_ownership(Ownership.BYOD)
    corp = profiles.for_ownership(Ownership.CORPORATE)
    assert byod.id == "byod-default" and corp.id == "corporate-default"
    # BYOD default: no personal app list, no location, no hostname, no serial
    assert not {"installed_apps", "location", "hostname", "serial_number"} & byod.collect
    assert "location" not in corp.collect
    assert byod.collect <= POSTURE_FIELDS and corp.collect <= POSTURE_FIELDS


def test_byod_apply_drops_personal_data() -> None:
    byod = PrivacyProfiles(SHIPPED).for_ownership(Ownership.BYOD)
    kept = byod.apply(FULL)
    assert kept.installed_apps == () and kept.location is None
    assert kept.serial_number is None and kept.hostname is None
    assert kept.os_version == "15" and kept.storage_encrypted is True
    assert [a.app_id for a in kept.managed_apps] == ["corp.mail"]
    assert byod.apply(kept) is kept  # nothing left to drop: no copy


def test_notice_document_lists_exact_fields() -> None:
    byod = PrivacyProfiles(SHIPPED).for_ownership(Ownership.BYOD)
    doc = byod.notice_document()
    assert doc["profile"] == "byod-default" and doc["ownership"] == "byod"
    assert "Your personal apps" in doc["cannot_see"] and "Location" in doc["cannot_see"]
    assert [c["field"] for c in doc["collected"]] == byod.collect_list
    assert all(c["label"] == FIELD_LABELS[c["field"]] for c in doc["collected"])


def test_every_posture_field_has_a_label() -> None:
    assert set(FIELD_LABELS) == POSTURE_FIELDS


def test_missing_ownership_falls_back_to_security_only(tmp_path: Path) -> None:
    (tmp_path / "byod.yaml").write_text((SHIPPED / "byod-default.yaml").read_text())
    profiles = PrivacyProfiles(tmp_path)
    corp = profiles.for_ownership(Ownership.CORPORATE)
    assert corp.collect == FALLBACK_COLLECT
    assert not {"installed_apps", "location", "serial_number", "hostname"} & corp.collect
    empty = PrivacyProfiles(tmp_path / "does-not-exist")
    assert empty.for_ownership(Ownership.BYOD).collect == FALLBACK_COLLECT


GOOD = """kind: PrivacyProfile
id: p1
ownership: byod
collect: [os_version]
notice:
  can_see: [OS version]
  cannot_see: [Photos]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("id: p1\n", "id: p1\ncolour: red\n"), ":3: unknown field 'colour'"),
        (
            GOOD.replace("[os_version]", "[os_version, shoe_size]"),
            ":4: unknown posture field 'shoe_size'",
        ),
        (GOOD.replace("[os_version]", "[os_version, os_version]"), ":4: 'os_version' listed twice"),
        (GOOD.replace("ownership: byod", "ownership: rented"), ":3: ownership must be one of"),
        (
            GOOD.replace("kind: PrivacyProfile", "kind: CompliancePolicy"),
            ":1: kind must be PrivacyProfile",
        ),
        (
            GOOD.replace("  cannot_see: [Photos]\n", "  cannot_see: [Photos]\n  maybe_see: [x]\n"),
            ":8: unknown field 'notice.maybe_see'",
        ),
        (GOOD.replace("  cannot_see: [Photos]\n", ""), ":5: notice.cannot_see must be listed"),
        (GOOD.replace("collect: [os_version]\n", ""), ":1: missing required field 'collect'"),
        (
            GOOD.replace("collect: [os_version]", "collect: os_version"),
            ":4: collect must be a list",
        ),
        (GOOD.replace("[os_version]", "[{a: 1}]"), ":4: collect entries must be strings"),
        (GOOD.replace("id: p1\n", "id: p1\nid: p2\n"), ":3: duplicate field 'id'"),
        ("- just\n- a list\n", ":1: a privacy profile must be a mapping"),
        ("kind: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_files_report_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PrivacyProfileError) as info:
        load_privacy_profile(path)
    assert any(p.startswith(str(path)) and expected in p for p in info.value.problems), (
        info.value.problems
    )


def test_two_profiles_for_one_ownership_refused_and_reload_keeps_last_good(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    profiles = PrivacyProfiles(tmp_path)
    assert profiles.for_ownership(Ownership.BYOD).id == "p1"
    (tmp_path / "b.yaml").write_text(GOOD.replace("id: p1", "id: p2"))
    with pytest.raises(PrivacyProfileError, match="second profile for ownership 'byod'"):
        profiles.reload()
    assert profiles.for_ownership(Ownership.BYOD).id == "p1"
