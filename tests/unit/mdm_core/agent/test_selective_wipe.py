"""The reference agent's selective wipe: exactly the named managed data, nothing else.

Personal files beside the state directory (and inside it, outside ``managed/``) survive
byte for byte; the key and enrollment record are untouched; a malformed payload is an
``error`` with nothing removed; a full ``wipe`` stays recorded only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mdm_core.agent.commands import RecordingExecutor
from mdm_core.agent.state import AgentState, StateDir


def _tree_digest(root: Path, *, skip: frozenset[Path] | set[Path] = frozenset()) -> dict[str, str]:
    """Every file under ``root`` (not following links) -> sha256 of its bytes, and every
    link -> its target."""
    found: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if any(here == s or s in here.parents for s in skip):
            continue
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            if path in skip:
                continue
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "link:" + os.readlink(path)
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, StateDir]:
    """A home directory with personal files, and the agent's state directory inside it."""
    home = tmp_path / "home"
    (home / "Documents").mkdir(parents=True)
    (home / "Documents" / "taxes.pdf").write_bytes(os.urandom(4096))
    (home / "Pictures").mkdir()
    (home / "Pictures" / "kids.jpg").write_bytes(os.urandom(8192))
    (home / ".bashrc").write_text("export PS1='$ '\n")
    state = StateDir(home / ".local" / "state" / "posture-agent")
    state.ensure()
    state.key()  # creates device_key.pem
    state.save(
        AgentState(
            server_url="https://mdm.example",
            device_id="d1",
            platform="linux",
            ownership="byod",
            certificate="CERT",
            ca_certificate="CA",
            checkin_url="https://mdm.example/mdm/v1/checkin",
            enrolled_at="2026-01-01T00:00:00+00:00",
        )
    )
    for kind, name in (
        ("apps", "com.example.mail"),
        ("apps", "com.example.payroll"),
        ("apps", "org.personal.game"),  # recorded, but not named by the wipe: it stays
        ("certificates", "corp-root"),
        ("certificates", "wifi"),
        ("configurations", "corp-wifi"),
    ):
        state.set_installed(kind, name, True)
    managed = state.managed_path
    (managed / "com.example.mail" / "Mail").mkdir(parents=True)
    (managed / "com.example.mail" / "Mail" / "inbox.mbox").write_bytes(os.urandom(2048))
    (managed / "com.example.payroll.db").write_bytes(b"salaries")
    # a link inside the container pointing at personal data: removed as a link, never followed
    (managed / "docs").symlink_to(home / "Documents")
    (state.path / "notes.txt").write_text("the user's own file in the state directory\n")
    return home, state


WIPE = {
    "reason": "offboarded",
    "work_container": True,
    "apps": ["com.example.mail", "com.example.payroll", "com.example.never-installed"],
    "certificates": ["corp-root"],
    "configurations": ["corp-wifi"],
}


def test_selective_wipe_removes_exactly_the_named_items_and_the_work_container(
    host: tuple[Path, StateDir],
) -> None:
    home, state = host
    skip = {state.installed_path, state.command_log_path}
    before = _tree_digest(home, skip={*skip, state.managed_path})
    outcome = RecordingExecutor(state).execute(
        {"id": "c1", "type": "selective_wipe", "payload": WIPE}
    )
    assert outcome.status == "acknowledged" and outcome.wants_checkin is True
    assert state.installed() == {"apps": ["org.personal.game"], "certificates": ["wifi"]}
    assert state.configurations() == []
    assert not state.managed_path.exists() and not state.managed_path.is_symlink()
    # everything else, personal files, key and enrollment record included, byte for byte
    assert _tree_digest(home, skip=skip) == before
    assert (home / "Documents" / "taxes.pdf").exists()  # the link was not followed
    for fragment in (
        "com.example.mail",
        "com.example.payroll",
        "corp-root",
        "corp-wifi",
        "work container",
        "3 files",
        "1 named item(s) were not installed",
    ):
        assert fragment in outcome.detail, (fragment, outcome.detail)
    assert "org.personal.game" not in outcome.detail
    log = state.command_log()
    assert [(e["command"]["type"], e["outcome"]) for e in log] == [
        ("selective_wipe", "acknowledged")
    ]
    assert state.load() is not None and state.key_path.exists()


def test_a_second_selective_wipe_finds_nothing_left(host: tuple[Path, StateDir]) -> None:
    _, state = host
    executor = RecordingExecutor(state)
    executor.execute({"id": "c1", "type": "selective_wipe", "payload": WIPE})
    again = executor.execute({"id": "c2", "type": "selective_wipe", "payload": WIPE})
    assert again.status == "acknowledged"
    assert "work container: none present" in again.detail
    assert state.installed() == {"apps": ["org.personal.game"], "certificates": ["wifi"]}


def test_work_container_false_keeps_it(host: tuple[Path, StateDir]) -> None:
    _, state = host
    outcome = RecordingExecutor(state).execute(
        {
            "id": "c",
            "type": "selective_wipe",
            "payload": {"apps": ["com.example.mail"], "work_container": False},
        }
    )
    assert outcome.status == "acknowledged" and "kept" in outcome.detail
    assert state.managed_path.is_dir()
    assert "com.example.mail" not in state.installed()["apps"]


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "everything",
        ["com.example.mail"],
        {"paths": ["/home"]},
        {"apps": "com.example.mail"},
        {"apps": ["com.example.mail", "../../Documents"]},
        {"apps": ["com.example.mail"], "certificates": ["/etc/ssl/private/key.pem"]},
        {"apps": ["com.example.mail", 7]},
        {"apps": ["com.example.mail", ""]},
        {"work_container": "yes"},
        {"reason": 5},
        {"apps": ["a"] * 2001},
    ],
)
def test_a_malformed_payload_is_an_error_and_removes_nothing(
    host: tuple[Path, StateDir], payload: object
) -> None:
    home, state = host
    before = _tree_digest(home, skip={state.command_log_path})
    outcome = RecordingExecutor(state).execute(
        {"id": "c", "type": "selective_wipe", "payload": payload}
    )
    assert outcome.status == "error" and "nothing removed" in outcome.detail
    assert _tree_digest(home, skip={state.command_log_path}) == before
    assert state.command_log()[-1]["outcome"] == "error"


def test_a_work_container_that_is_a_link_is_unlinked_not_followed(tmp_path: Path) -> None:
    personal = tmp_path / "personal"
    personal.mkdir()
    (personal / "diary.txt").write_text("mine")
    state = StateDir(tmp_path / "state")
    state.ensure()
    state.managed_path.symlink_to(personal)
    outcome = RecordingExecutor(state).execute({"id": "c", "type": "selective_wipe", "payload": {}})
    assert outcome.status == "acknowledged"
    assert not state.managed_path.is_symlink()
    assert (personal / "diary.txt").read_text() == "mine"


def test_a_full_wipe_is_recorded_only(host: tuple[Path, StateDir]) -> None:
    home, state = host
    before = _tree_digest(home, skip={state.command_log_path})
    outcome = RecordingExecutor(state).execute({"id": "c", "type": "wipe", "payload": {}})
    assert outcome.status == "acknowledged" and "no action on host" in outcome.detail
    assert _tree_digest(home, skip={state.command_log_path}) == before
    assert state.managed_path.is_dir()


def test_the_detail_fits_the_server_limit(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    names = [f"com.example.app{i:04d}" for i in range(500)]
    for name in names:
        state.set_installed("apps", name, True)
    outcome = RecordingExecutor(state).execute(
        {"id": "c", "type": "selective_wipe", "payload": {"apps": names}}
    )
    assert outcome.status == "acknowledged" and len(outcome.detail) <= 2000
    assert state.installed()["apps"] == []


def test_apply_configuration_is_recorded_in_the_installed_set(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    state.set_installed("apps", "com.example.vpn", True)
    outcome = RecordingExecutor(state).execute(
        {"id": "c", "type": "apply_configuration", "payload": {"configuration_id": "corp-wifi"}}
    )
    assert outcome.status == "acknowledged" and "applied" in outcome.detail
    assert state.configurations() == ["corp-wifi"]
    assert state.installed() == {"apps": ["com.example.vpn"], "certificates": []}
