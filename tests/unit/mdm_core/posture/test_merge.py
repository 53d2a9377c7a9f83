"""Merging reports of one device's two sources (MDM channel + companion app)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mdm_core.posture.merge import PostureSources, merge_reports, overlay_snapshot
from mdm_core.posture.model import ManagedApp, Platform, Posture

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _p(at: datetime, **fields: object) -> Posture:
    return Posture(platform=Platform.IOS, collected_at=at, **fields)  # type: ignore[arg-type]


MDM = _p(
    T0,
    os_version="18.1",
    storage_encrypted=True,
    managed_apps=(ManagedApp(app_id="corp.mail"),),
)


def _chain(*reports: tuple[str, Posture]) -> tuple[Posture, PostureSources]:
    posture: Posture | None = None
    sources: PostureSources | None = None
    for fmt, report in reports:
        posture, sources = merge_reports(posture, sources, report, fmt)
    assert posture is not None and sources is not None
    return posture, sources


def test_first_report_is_taken_as_is() -> None:
    merged, sources = merge_reports(None, None, MDM, "apple")
    assert merged is MDM
    assert sources.fields == {
        "os_version": "apple",
        "storage_encrypted": "apple",
        "managed_apps": "apple",
    }
    assert sources.formats == {"apple": T0}


def test_companion_report_adds_to_mdm_report() -> None:
    companion = _p(T0 + timedelta(minutes=1), jailbroken=False, agent_present=True)
    merged, sources = _chain(("apple", MDM), ("agent", companion))
    assert merged.os_version == "18.1" and merged.storage_encrypted is True
    assert merged.jailbroken is False and merged.agent_present is True
    assert [a.app_id for a in merged.managed_apps] == ["corp.mail"]
    assert merged.collected_at == T0  # as old as its oldest contributing report
    assert sources.fields["jailbroken"] == "agent" and sources.fields["os_version"] == "apple"
    # and back: the next MDM report keeps the companion's jailbreak verdict
    later = _p(T0 + timedelta(minutes=2), os_version="18.2", storage_encrypted=True)
    merged2, _ = _chain(("apple", MDM), ("agent", companion), ("apple", later))
    assert merged2.os_version == "18.2" and merged2.jailbroken is False
    assert merged2.collected_at == T0 + timedelta(minutes=1)


def test_a_source_never_carries_its_own_fields() -> None:
    silent = _p(T0 + timedelta(minutes=1), os_version="18.1")  # encryption no longer reported
    merged, sources = _chain(("apple", MDM), ("apple", silent))
    assert merged.storage_encrypted is None and merged.managed_apps == ()
    assert "storage_encrypted" not in sources.fields


def test_new_value_wins_over_the_other_source() -> None:
    companion = _p(T0 + timedelta(minutes=1), storage_encrypted=False)
    merged, sources = _chain(("apple", MDM), ("agent", companion))
    assert merged.storage_encrypted is False and sources.fields["storage_encrypted"] == "agent"


def test_stale_source_is_not_carried() -> None:
    companion = _p(T0 + timedelta(hours=25), jailbroken=False)
    merged, sources = _chain(("apple", MDM), ("agent", companion))
    assert merged.os_version is None and merged.jailbroken is False
    assert merged.collected_at == companion.collected_at
    assert set(sources.formats) == {"agent"}


def test_sources_json_round_trip_and_garbage() -> None:
    _, sources = _chain(("apple", MDM), ("agent", _p(T0, jailbroken=True)))
    assert PostureSources.from_json(sources.to_json()) == sources
    assert PostureSources.from_json(None) is None
    assert PostureSources.from_json({"fields": []}) is None
    assert PostureSources.from_json({"fields": {}, "formats": {"apple": "yesterday"}}) is None


# ---- a login snapshot laid over the stored posture ------------------------------------------


def test_snapshot_fields_win_and_absent_ones_keep_stored_evidence_and_its_age() -> None:
    later = T0 + timedelta(minutes=40)
    snapshot = _p(later, os_version="18.2", storage_encrypted=False)
    assert overlay_snapshot(MDM, snapshot) == _p(
        T0,  # managed_apps came from the stored report: the result is as old as it
        os_version="18.2",
        storage_encrypted=False,
        managed_apps=MDM.managed_apps,
    )
    empty = _p(later)
    assert overlay_snapshot(MDM, empty) == MDM  # nothing replaces evidence with nothing
    whole = _p(later, os_version="18.2", storage_encrypted=True, managed_apps=MDM.managed_apps)
    assert overlay_snapshot(MDM, whole) is whole  # nothing carried: as fresh as the snapshot
    assert overlay_snapshot(None, snapshot) is snapshot
    other = Posture(platform=Platform.MACOS, collected_at=later)
    assert overlay_snapshot(MDM, other) is other  # never mixes two platforms' evidence
