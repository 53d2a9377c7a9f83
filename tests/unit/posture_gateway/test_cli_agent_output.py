"""What ``posture agent`` prints: the privacy notice is never cut, the check-in is in words."""

from __future__ import annotations

import json
import re

import pytest
from rich.console import Console

from mdm_core.agent.agent import CheckinResult
from mdm_core.agent.client import CheckinAnswer
from mdm_core.agent.commands import CommandOutcome
from posture_gateway.cli.agent_output import (
    STACK_BELOW,
    checkin_json,
    notice_panel,
    render_checkin,
)

NOTICE = {
    "profile": "byod-default",
    "description": (
        "Your organisation checks only what it needs to decide whether this personal device "
        "may reach company applications; everything else stays on the device."
    ),
    "can_see": [
        "operating system name and version, and whether security updates are current",
        "whether storage encryption and a screen lock passcode are enabled",
        "whether the device is jailbroken or rooted",
    ],
    "cannot_see": [
        "your photos, messages, e-mail, browsing history and personal files",
        "the list of apps you installed for yourself",
        "your location, the device serial number and its hostname",
    ],
}


def _words(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─•]", " ", text).split())


@pytest.mark.parametrize("width", [32, 50, 80, 140])
def test_privacy_notice_is_never_cut(width: int) -> None:
    console = Console(width=width, record=True, color_system=None)
    console.print(notice_panel(NOTICE, width))
    text = console.export_text()
    assert "…" not in text
    flat = _words(text)
    assert _words(str(NOTICE["description"])) in flat
    items = [*NOTICE["can_see"], *NOTICE["cannot_see"]]
    if width < STACK_BELOW:  # stacked: every item reads in one piece
        for sentence in items:
            assert _words(str(sentence)) in flat, (width, sentence)
    else:  # side by side: every word of every item is there (wrapped within its column)
        words = flat.split()
        for sentence in items:
            for word in _words(str(sentence)).split():
                assert word in words, (width, word)
    assert max(len(line) for line in text.splitlines()) <= width


def _result(compliance: dict, executed=()) -> CheckinResult:
    return CheckinResult(
        answer=CheckinAnswer(
            commands=[], collect=["os_version"], next_checkin_s=900, compliance=compliance
        ),
        executed=list(executed),
    )


def test_checkin_summary_says_what_to_fix() -> None:
    result = _result(
        {
            "state": "noncompliant",
            "outcome": "warn",
            "policy_ids": ["baseline"],
            "reasons": [
                {
                    "policy_id": "baseline",
                    "rule_id": "disk-encryption",
                    "message": "Storage encryption is off",
                    "remediation": "Turn on full-disk encryption (LUKS)",
                }
            ],
        },
        [({"id": "c-1", "type": "lock"}, CommandOutcome(status="acknowledged", detail="recorded"))],
    )
    console = Console(width=100, record=True, color_system=None)
    render_checkin(console, result)
    text = console.export_text()
    assert "this device is noncompliant (login outcome warn)" in text
    assert "next check-in in 900s" in text
    assert "baseline/disk-encryption" in text and "Turn on full-disk encryption" in text
    assert "command lock (c-1): acknowledged" in text
    assert "{" not in text  # no raw JSON for people


def test_checkin_json_is_for_machines() -> None:
    result = _result({"state": "compliant", "outcome": "allow", "reasons": [], "policy_ids": []})
    console = Console(width=100, record=True, color_system=None)
    render_checkin(console, result, as_json=True)
    parsed = json.loads(console.export_text())
    assert parsed == checkin_json(result)
    assert parsed["compliance"]["state"] == "compliant" and parsed["next_checkin_s"] == 900


def test_compliant_checkin_says_nothing_to_fix() -> None:
    console = Console(width=80, record=True, color_system=None)
    render_checkin(console, _result({"state": "compliant", "outcome": "allow"}))
    assert "nothing to fix" in console.export_text()
