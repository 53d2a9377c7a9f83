"""The pages people see, in headless Chromium at desktop (1280x800) and phone (390x844)
widths: landing, privacy notice, sign-in help, enrollment help, sign-in form and the
remediation page of a real blocked login (a jailbroken phone, through the real gate).

Assertions are on the DOM, not on pixels: errors are announced (``role=alert``), every form
field has a label, text and buttons have enough contrast (WCAG AA, 4.5:1), everything is
reachable with the keyboard, and nothing scrolls sideways at phone width. Each page is
saved as a PNG under ``$POSTURE_TEST_ARTIFACTS`` (default: a temporary directory) so a
person can look at them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from mdm_core.posture.model import Platform
from mdm_core.simulator.reports import DeviceTraits
from tests.e2e.chromium import chromium
from tests.e2e.login_stack import CLIENT_ID, PASSWORD, USERNAME, login_stack

pytestmark = [pytest.mark.browser]

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
HELPDESK = {
    "name": "the Example IT service desk",
    "email": "it-help@example.com",
    "phone": "+1 555 0100",
    "organisation": "Example Corp",
}
REDIRECT = "http://127.0.0.1:9/cb"  # never reached: the login is blocked

_CONTRAST_JS = """
function lum(c){var m=c.match(/[\\d.]+/g).map(Number);var a=[m[0],m[1],m[2]].map(function(v){
  v/=255;return v<=0.03928?v/12.92:Math.pow((v+0.055)/1.055,2.4);});
  return 0.2126*a[0]+0.7152*a[1]+0.0722*a[2];}
function bg(el){while(el){var c=getComputedStyle(el).backgroundColor;
  if(c&&c!=='rgba(0, 0, 0, 0)'&&c!=='transparent')return c;el=el.parentElement;}
  return 'rgb(255,255,255)';}
var worst=[];var els=document.querySelectorAll('p,li,a,button,label,h1,h2,code,span,strong');
for(var i=0;i<els.length;i++){var el=els[i];if(!el.offsetParent&&el.tagName!=='BODY')continue;
  if(!el.textContent.trim())continue;
  var f=lum(getComputedStyle(el).color),b=lum(bg(el));
  var r=(Math.max(f,b)+0.05)/(Math.min(f,b)+0.05);
  if(r<4.5)worst.push(el.tagName+':'+el.textContent.trim().slice(0,40)+':'+r.toFixed(2));}
return worst;
"""

#: "Check again": a form button when the device can be asked to check in now, else a link.
CHECK_AGAIN = "//*[self::a or self::button][normalize-space()='Check again']"


def _artifacts() -> Path:
    root = os.environ.get("POSTURE_TEST_ARTIFACTS") or tempfile.gettempdir()
    path = Path(root) / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _viewport(browser: webdriver.Chrome, size: tuple[int, int]) -> None:
    """Make the page's viewport exactly ``size`` (window chrome differs per build)."""
    browser.set_window_size(*size)
    inner = browser.execute_script("return [window.innerWidth, window.innerHeight]")
    browser.set_window_size(size[0] * 2 - inner[0], size[1] * 2 - inner[1])
    inner = browser.execute_script("return [window.innerWidth, window.innerHeight]")
    assert inner[0] == size[0], inner


def _check_page(browser: webdriver.Chrome, name: str, size_name: str) -> None:
    """The DOM checks every page passes at every width; then the screenshot."""
    width = SIZES[size_name][0]
    scroll = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= width, f"{name} scrolls sideways at {width}px ({scroll}px wide)"
    assert browser.execute_script(_CONTRAST_JS) == [], name
    # Every visible form field has a label pointing at it.
    for field in browser.find_elements(By.CSS_SELECTOR, "input:not([type=hidden])"):
        field_id = field.get_attribute("id")
        assert field_id and browser.find_elements(By.CSS_SELECTOR, f"label[for={field_id}]")
    # The keyboard reaches every link and button, in order, from the skip link on.
    focusable = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href],button,input:not([type=hidden])'))"
        ".filter(function(e){return e.tabIndex>=0}).length"
    )
    if browser.execute_script("return document.activeElement === document.body"):
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)  # first Tab: skip link
    else:  # a field has autofocus (sign-in form): start from the skip link
        browser.execute_script("document.querySelector('a.skip').focus()")
    assert browser.switch_to.active_element.get_attribute("class") == "skip", name
    reached = 1
    for _ in range(focusable + 2):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.tag_name in ("a", "button", "input"):
            reached += 1
    assert reached >= focusable, f"{name}: {reached} of {focusable} reachable by keyboard"
    browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    shot = _artifacts() / f"{name}-{size_name}.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def _authorization_url(base: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    return f"{base}/oauth/authorize?{urlencode(params)}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("pages")
    with login_stack(
        tmp, REDIRECT, Platform.ANDROID, DeviceTraits(jailbroken=True), {"helpdesk": HELPDESK}
    ) as running:
        yield running


@pytest.mark.parametrize("size_name", list(SIZES))
def test_public_pages(stack: Any, tmp_path: Path, size_name: str) -> None:
    with chromium(tmp_path / "profile") as browser:
        _viewport(browser, SIZES[size_name])
        browser.get(stack.url + "/")
        assert "Posture Gateway" in browser.find_element(By.TAG_NAME, "h1").text
        hrefs = {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a")}
        assert {stack.url + "/help/sign-in", stack.url + "/privacy"} <= hrefs
        assert (
            "it-help@example.com" in browser.find_element(By.CSS_SELECTOR, "[data-helpdesk]").text
        )
        _check_page(browser, "landing", size_name)

        browser.get(stack.url + "/privacy")
        collected = browser.find_elements(By.CSS_SELECTOR, "[data-list=collected] li")
        fields = {li.get_attribute("data-field") for li in collected}
        assert "os_version" in fields and "serial_number" not in fields and "hostname" not in fields
        never = browser.find_element(By.CSS_SELECTOR, "[data-list=cannot-see]").text
        assert "Location" in never and "Photos" in never
        cannot_do = browser.find_element(By.CSS_SELECTOR, "[data-list=cannot-do]").text
        assert "Erase the whole device" in cannot_do
        can_do = browser.find_element(By.CSS_SELECTOR, "[data-list=can-do]").text
        assert "remove the work apps" in can_do
        _check_page(browser, "privacy-byod", size_name)

        for path, name in (("/help/sign-in", "sign-in-help"), ("/enroll", "enroll")):
            browser.get(stack.url + path)
            assert browser.find_element(By.TAG_NAME, "h1").text
            _check_page(browser, name, size_name)


@pytest.mark.parametrize("size_name", list(SIZES))
def test_sign_in_and_remediation_pages(stack: Any, tmp_path: Path, size_name: str) -> None:
    with chromium(tmp_path / "profile") as browser:
        _viewport(browser, SIZES[size_name])
        browser.get(_authorization_url(stack.url))
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "password"))
        privacy = browser.find_elements(By.CSS_SELECTOR, "main a[href='/privacy']")
        assert privacy, "the sign-in page links the privacy notice"
        browser.find_element(By.ID, "username").send_keys(USERNAME)
        browser.find_element(By.ID, "password").send_keys("wrong password")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        alert = WebDriverWait(browser, 10).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "[role=alert][data-error]")
        )
        assert "not right" in alert[0].text
        assert browser.find_element(By.ID, "password").get_attribute("aria-invalid") == "true"
        _check_page(browser, "sign-in-error", size_name)

        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(browser, 20).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "[data-outcome=block]")
        )
        alert = browser.find_element(By.CSS_SELECTOR, "[role=alert][data-outcome=block]")
        device = browser.find_element(By.CSS_SELECTOR, "[data-device]").text
        assert "Android device" in device and stack.device.device_id[:8] in device
        assert "sign-in was refused" in alert.text.lower()
        # The failed rule sits beside its own fix, in what the user can fix ...
        yours = browser.find_elements(By.CSS_SELECTOR, "[data-group=user] li[data-reason]")
        jailbreak = [li for li in yours if "jailbroken" in li.text.lower()]
        assert jailbreak, [li.text for li in yours]
        assert "factory reset" in jailbreak[0].find_element(By.CSS_SELECTOR, ".fix").text.lower()
        # ... and the quarantine it caused is IT's, with the help desk named.
        needs_it = browser.find_elements(By.CSS_SELECTOR, "[data-group=it] li[data-reason]")
        assert "device_quarantined" in {li.get_attribute("data-reason") for li in needs_it}
        assert (
            "it-help@example.com" in browser.find_element(By.CSS_SELECTOR, "[data-helpdesk]").text
        )
        assert browser.find_element(By.XPATH, CHECK_AGAIN).is_displayed()
        _check_page(browser, "remediation", size_name)
