"""``posture demo`` runs the whole story against a real server and exits 0.

The story's facts are asserted by the demo itself (it raises when a step does not happen as
told); this test runs it as a user would and checks that the output reports those facts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], float, Path]:
    tmp_path = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env["COLUMNS"] = "200"
    posture = Path(sys.executable).with_name("posture")
    t0 = time.monotonic()
    done = subprocess.run(
        [str(posture), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    return done, time.monotonic() - t0, tmp_path


def _row(out: str, *cells: str) -> bool:
    """A table row holding every one of ``cells`` (in order)."""
    pattern = r".*?".join(re.escape(c) for c in cells)
    return any(re.search(pattern, line) for line in out.splitlines() if "│" in line)


@pytest.mark.slow
def test_posture_demo_runs_to_exit_zero(
    demo_run: tuple[subprocess.CompletedProcess[str], float, Path],
) -> None:
    done, elapsed, tmp_path = demo_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    assert "every step happened as told" in out
    for expected in (
        "registers serial",
        "privacy notice",
        "dropped before storage",
        "queued",
        "acknowledged",
        "The record",
    ):
        assert expected in out, expected
    assert list(tmp_path.iterdir()) == []  # the demo cleans up after itself, writes nothing here


@pytest.mark.slow
def test_http_login_gives_a_verified_id_token_with_posture_claims(
    demo_run: tuple[subprocess.CompletedProcess[str], float, Path],
) -> None:
    done, _, _ = demo_run
    out = done.stdout
    assert done.returncode == 0, out[-4000:]
    assert "/oauth/authorize (code flow, PKCE S256, state, nonce)" in out
    assert "ID token verified against /jwks.json" in out
    assert _row(out, "sub", "bob@example.com")
    assert _row(out, "posture_outcome", "allow")
    assert _row(out, "compliance_state", "compliant")
    assert _row(out, "acr", "urn:posture-gateway:acr:managed-device")


@pytest.mark.slow
def test_rooted_phone_gets_no_code_and_reasons_one_per_line(
    demo_run: tuple[subprocess.CompletedProcess[str], float, Path],
) -> None:
    out = demo_run[0].stdout
    assert "remediation page and no code" in out
    assert re.search(r"• The device is jailbroken or rooted.*\(rule_failed\)", out)
    assert "• This device is quarantined after a critical compliance failure." in out
    # The "why" of a failure caused by a missing value is shown, each reason on its own line.
    assert "This device did not report: passcode min length." in out
    assert ".; " not in out


@pytest.mark.slow
def test_quarantined_laptop_needs_an_admin_release_then_a_passing_checkin(
    demo_run: tuple[subprocess.CompletedProcess[str], float, Path],
) -> None:
    out = demo_run[0].stdout
    story = out[out.index("Alice's laptop: quarantine, fix, release") :]
    steps = [
        "with disk encryption off",
        "the device is quarantined",
        "a passing check-in alone does not release it: still quarantined",
        "Alice signs in from it: HTTP 403, no code",
        "releases it (core.quarantine.release, audited as device.release)",
        "compliant → allow → active",
        "Alice signs in over HTTP: code redeemed, ID token verified",
    ]
    at = 0
    for step in steps:
        found = " ".join(story.split()).find(step, at)
        assert found >= 0, step
        at = found


@pytest.mark.slow
def test_hr_offboarding_chapter(
    demo_run: tuple[subprocess.CompletedProcess[str], float, Path],
) -> None:
    out = demo_run[0].stdout
    story = " ".join(out[out.index("HR says Bob left") : out.index("The record:")].split())
    steps = [
        "forged signature: 401 invalid_signature",
        "status Inactive -> offboarding_started",
        "queues a selective wipe for his iPhone",
        "never a full wipe of a personal phone",
        "receives the selective wipe, removes the work data and acknowledges it",
        "redelivers the same webhook: answered from the record, nothing repeats",
    ]
    at = 0
    for step in steps:
        found = story.find(step, at)
        assert found >= 0, step
        at = found
    record = out[out.index("The record:") :]
    assert _row(
        record, "hr:bamboohr", "hr.employee_event", "bob@example.com", "offboarding_started"
    )
    assert _row(record, "command.state_changed", "selective_wipe: acknowledged")


@pytest.mark.slow
def test_the_record_lists_decisions_commands_and_enrollments(
    demo_run: tuple[subprocess.CompletedProcess[str], float, Path],
) -> None:
    out = demo_run[0].stdout
    record = out[out.index("The record:") :]
    for cells in (
        ("admin:carol", "enrollment.serial_registered", "DEMO-LNX-0001", "ok"),
        ("enrollment.refused", "DEMO-LNX-0001", "refused"),
        ("device.enroll", "Alice's laptop", "ok"),
        ("device.enroll", "Bob's iPhone", "ok"),
        ("device.enroll", "Dave's Android", "ok"),
        ("access.decision", "Bob's iPhone", "allow"),
        ("access.decision", "Dave's Android", "block"),
        ("access.decision", "Alice's laptop", "block"),
        ("admin:carol", "device.release", "Alice's laptop", "ok"),
        ("access.decision", "Alice's laptop", "allow"),
        ("compliance.changed", "Dave's Android", "quarantined → block"),
        ("admin:carol", "command.state_changed", "the lock", "lock: queued"),
        ("command.state_changed", "the lock", "lock: acknowledged"),
    ):
        assert _row(record, *cells), cells
    # The counts: four sign-in decisions (Bob allow, Dave block, Alice block then allow).
    assert re.search(r"│ access\.decision\s+│\s+4 │", record)
    assert re.search(r"│ device\.enroll\s+│\s+3 │", record)


def test_demo_failure_exits_non_zero(tmp_path: Path) -> None:
    """A step that does not happen as told stops the demo with a non-zero exit."""
    code = (
        "import sys\n"
        "import posture_gateway.demo.story as d\n"
        "def broken(story):\n"
        "    d.check(False, 'the lock was not delivered')\n"
        "d.STEPS.insert(1, ('a step that fails', broken))\n"
        "sys.argv = ['posture', 'demo']\n"
        "from posture_gateway.cli.main import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "demo failed" in done.stdout and "the lock was not delivered" in done.stdout
