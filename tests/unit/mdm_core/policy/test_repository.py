"""PolicyRepository: reload without restart, keep the last valid set, expose the error."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from mdm_core.policy.errors import PolicySetUnavailable
from mdm_core.policy.repository import PolicyRepository

from .factories import NOW, SIMPLE, write

BROKEN = SIMPLE.replace("severity: medium", "severity: urgent")


def _bump(path: Path) -> None:
    """Make an edit visible to mtime polling even within one clock tick."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_nothing_loaded_fails_closed(tmp_path: Path) -> None:
    repo = PolicyRepository(tmp_path / "missing", clock=lambda: NOW)
    with pytest.raises(PolicySetUnavailable):
        repo.current()
    result = repo.reload()
    assert result.changed is False and result.problems
    with pytest.raises(PolicySetUnavailable, match="does not exist"):
        repo.current()
    assert repo.status.healthy is False and repo.status.fingerprint is None


def test_reload_swaps_in_a_valid_edit(tmp_path: Path) -> None:
    write(tmp_path, {"p.yaml": SIMPLE})
    repo = PolicyRepository(tmp_path, clock=lambda: NOW)
    assert repo.reload().changed is True
    first = repo.current()
    assert repo.reload().changed is False  # same bytes, same set
    assert repo.current() is first
    write(tmp_path, {"p.yaml": SIMPLE.replace("passcode_min_length: 6", "passcode_min_length: 7")})
    assert repo.reload().changed is True
    assert repo.current() is not first
    assert repo.current().fingerprint != first.fingerprint
    assert repo.status.healthy


def test_invalid_edit_keeps_the_last_valid_set_and_logs_every_problem(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, {"p.yaml": SIMPLE})
    repo = PolicyRepository(tmp_path, clock=lambda: NOW)
    repo.reload()
    good = repo.current()
    write(tmp_path, {"p.yaml": BROKEN})
    with caplog.at_level(logging.ERROR, logger="mdm_core.policy.repository"):
        result = repo.reload()
    assert result.changed is False
    assert repo.current() is good  # still in force
    status = repo.status
    assert status.healthy is False and status.fingerprint == good.fingerprint
    assert [str(p) for p in status.errors] == [str(p) for p in result.problems]
    assert any(f"{tmp_path / 'p.yaml'}:" in r.getMessage() for r in caplog.records)
    assert "keeping policy set" in caplog.text
    write(tmp_path, {"p.yaml": SIMPLE})  # fixed again
    repo.reload()
    assert repo.status.healthy


def test_poll_reloads_only_on_change_and_listeners_hear_of_it(tmp_path: Path) -> None:
    write(tmp_path, {"p.yaml": SIMPLE})
    repo = PolicyRepository(tmp_path, clock=lambda: NOW)
    seen: list[str] = []
    repo.on_change(lambda ps: seen.append(ps.fingerprint))
    assert repo.poll() is True
    assert repo.poll() is False
    path = write(tmp_path, {"q.yaml": SIMPLE.replace("id: base", "id: other")})
    assert repo.poll() is True
    _bump(path / "q.yaml")
    assert repo.poll() is True  # re-validated; identical content keeps the set
    assert len(seen) == 2


def test_background_watcher_picks_up_edits(tmp_path: Path) -> None:
    write(tmp_path, {"p.yaml": SIMPLE})
    repo = PolicyRepository(tmp_path, poll_interval=0.05)
    repo.start()
    try:
        before = repo.current().fingerprint
        write(tmp_path, {"p.yaml": SIMPLE.replace("max_posture_age: 1h", "max_posture_age: 2h")})
        _bump(tmp_path / "p.yaml")
        deadline = time.monotonic() + 5
        while repo.current().fingerprint == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert repo.current().fingerprint != before
        assert repo.current().compliance[0].max_posture_age.total_seconds() == 7200
    finally:
        repo.stop()


def test_group_provider_failure_does_not_block_loading(tmp_path: Path) -> None:
    write(tmp_path, {"p.yaml": SIMPLE})

    def broken() -> set[str]:
        raise ConnectionError("database down")

    repo = PolicyRepository(tmp_path, known_groups=broken, clock=lambda: NOW)
    assert repo.reload().changed is True


def test_unknown_group_is_a_warning_by_default_and_an_error_when_strict(tmp_path: Path) -> None:
    text = SIMPLE.replace("assign: {}", "assign: {groups: [ghosts]}")
    write(tmp_path, {"p.yaml": text})
    lenient = PolicyRepository(tmp_path, known_groups=lambda: {"staff"}, clock=lambda: NOW)
    assert lenient.reload().changed is True
    assert [w.reason for w in lenient.status.warnings] == [
        "policy 'base' targets unknown group 'ghosts' (not in the directory mirror): "
        "it applies to nobody in it"
    ]
    strict = PolicyRepository(
        tmp_path, known_groups=lambda: {"staff"}, clock=lambda: NOW, strict_groups=True
    )
    result = strict.reload()
    assert any("unknown group 'ghosts'" in p.reason for p in result.problems)
    repo_no_mirror = PolicyRepository(tmp_path, known_groups=lambda: None, clock=lambda: NOW)
    assert repo_no_mirror.reload().changed is True
