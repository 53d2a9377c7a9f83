"""The pages a person can trust: landing, privacy notice from the profile in force, help,
enrollment, and a remediation page that pairs each failed check with its fix and tells
what the user can fix from what needs IT (with the configured help desk)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from mdm_core.access.decision import Decision, Reason
from mdm_core.posture.model import Ownership
from posture_gateway.pages.remediation import build_remediation
from posture_gateway.settings import Settings
from tests.integration.oidc.conftest import Browser, StubGate, write_files

POLICY_DIR = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    clients, users = write_files(tmp_path)
    return Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "dev_mode": True,
            "public_url": "http://localhost",
            "policy_dir": POLICY_DIR,
            "oidc": {"clients_file": clients, "users_file": users},
            "helpdesk": {"name": "Example IT", "email": "help@example.com", "phone": "+1 555 0100"},
        }
    )


def test_landing_page_says_what_this_is_and_links_help_and_privacy(app: Flask) -> None:
    response = app.test_client().get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "checks that the device" in html
    assert 'href="/help/sign-in"' in html and 'href="/privacy"' in html
    assert "help@example.com" in html
    assert "Set-Cookie" not in response.headers  # a public page sets no session
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_privacy_page_is_generated_from_the_profile_in_force(app: Flask) -> None:
    core = app.extensions["posture"].core
    html = app.test_client().get("/privacy").get_data(as_text=True)
    byod = core.privacy.for_ownership(Ownership.BYOD)
    for field in byod.collect_list:
        assert f'data-field="{field}"' in html
    assert 'data-field="serial_number"' not in html and 'data-field="hostname"' not in html
    for item in byod.notice.cannot_see:
        assert item.replace("'", "&#39;") in html
    assert "remove the work apps, work accounts and their data" in html  # selective wipe
    assert "Erase the whole device" in html  # what it cannot do on a personal device
    corporate = app.test_client().get("/privacy?ownership=corporate").get_data(as_text=True)
    assert 'data-field="serial_number"' in corporate
    assert "lock the device and take it out of management" in corporate
    assert "Erase the whole device" not in corporate


@pytest.mark.parametrize("bad", ["work", "BYOD", "", "<script>"])
def test_privacy_page_refuses_an_unknown_ownership(app: Flask, bad: str) -> None:
    response = app.test_client().get("/privacy", query_string={"ownership": bad})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'role="alert"' in html and "<script>" not in html


def test_the_json_notice_stays_for_the_agent(app: Flask) -> None:
    notice = app.test_client().get("/mdm/v1/privacy-notice").json
    assert notice["ownership"] == "byod" and notice["collected"]


@pytest.mark.parametrize("path", ["/help/sign-in", "/enroll"])
def test_help_pages(app: Flask, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'href="/privacy"' in html and "Example IT" in html


def test_login_and_device_pages_link_privacy_and_enrollment(
    browser: Browser, gate: StubGate
) -> None:
    assert browser.authorize().status_code == 303
    login = browser.client.get("/login").get_data(as_text=True)
    assert 'href="/privacy"' in login and 'href="/help/sign-in"' in login
    assert browser.login().status_code == 303
    device = browser.client.get("/login/device").get_data(as_text=True)
    assert 'href="/enroll"' in device and 'href="/privacy"' in device


def test_login_error_is_announced(browser: Browser, gate: StubGate) -> None:
    browser.authorize()
    page = browser.login(password="wrong").get_data(as_text=True)
    assert 'role="alert"' in page and 'aria-invalid="true"' in page


def test_block_page_pairs_fixes_and_separates_what_needs_it(
    browser: Browser, gate: StubGate
) -> None:
    gate.verdict = Decision(
        outcome="block",
        reasons=(
            Reason(
                "rule_failed", "Storage is not encrypted.", "baseline", "high", "Turn on FileVault."
            ),
            Reason("rule_failed", "The OS is too old.", "baseline", "high", "Update macOS."),
            Reason("user_unknown", "Your account is not known here."),
        ),
        remediation=("Turn on FileVault.", "Update macOS."),
        device="Mac “MacBookPro18,3” (company-owned, ID 1a2b3c4d)",
    )
    browser.authorize()
    browser.login()
    page = browser.submit_device()
    assert page.status_code == 403
    html = page.get_data(as_text=True)
    user_part, _, it_part = html.partition('data-group="it"')
    assert 'role="alert"' in html and "1a2b3c4d" in html and "MacBookPro18,3" in html
    # Each rule beside its own fix, in order, in the user's part.
    assert user_part.index("Storage is not encrypted.") < user_part.index("Turn on FileVault.")
    assert user_part.index("Turn on FileVault.") < user_part.index("The OS is too old.")
    assert user_part.index("The OS is too old.") < user_part.index("Update macOS.")
    # user_unknown is not the user's to fix.
    assert 'data-reason="user_unknown"' in it_part and "user_unknown" not in user_part
    assert "help@example.com" in html and "+1 555 0100" in html
    assert 'data-group="steps"' not in html  # no leftover, unpaired steps


def test_remediation_model_fails_safe() -> None:
    fix = build_remediation(
        [
            Reason("device_quarantined", "Quarantined."),
            Reason("bad_signature", "The proof did not verify.", severity="critical"),
            Reason("something_new", "A code we have never seen."),
            Reason("posture_stale", "No check-in for a day."),
            Reason("device_unknown", "Not enrolled."),
        ],
        ["Ask IT."],
    )
    assert [c.code for c in fix.yours] == ["posture_stale", "device_unknown"]
    assert [c.code for c in fix.needs_it] == [
        "device_quarantined",
        "bad_signature",
        "something_new",
    ]
    assert all(c.fix for c in fix.yours) and fix.enroll
    assert fix.steps == ("Ask IT.",)  # not guessed onto one of several reasons
    only_it = build_remediation([Reason("user_unknown", "Unknown user.")])
    assert only_it.only_it and not only_it.yours


def test_warn_page_pairs_each_check_with_its_fix(browser: Browser, gate: StubGate) -> None:
    gate.verdict = Decision(
        outcome="warn",
        reasons=(
            Reason("rule_failed", "The firewall is off.", "baseline", "medium", "Turn it on."),
        ),
        remediation=("Turn it on.",),
        device="Windows PC (company-owned, ID 9f9f9f9f)",
    )
    browser.authorize()
    browser.login()
    html = browser.submit_device().get_data(as_text=True)
    assert 'role="alert"' in html and "9f9f9f9f" in html and "Continue for now" in html
    user_part = html.split('data-group="user"')[1]
    assert user_part.index("The firewall is off.") < user_part.index("Turn it on.")
    assert 'data-group="steps"' not in html
