"""``posture try-login`` (issue 8): the real command, as a subprocess, against a live gateway.

The gateway, an enrolled healthy device and its loopback login helper run in-process
(:func:`tests.e2e.login_stack.login_stack`); the relying party's redirect URI is on an
ephemeral free port where the command listens. The test plays the browser with an HTTP
client: it follows the printed authorization URL, posts the password form, answers the
device check with the helper's login proof and follows the redirect to the command's
callback. Refusals (a wrong client secret, a forged state, no callback) exit 1 with one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from mdm_core.posture.model import Platform
from mdm_core.simulator.reports import DeviceTraits
from tests.e2e.deployment import _DEVICE_CONFIG, _field, _follow
from tests.e2e.login_stack import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USER_ID,
    USERNAME,
    Stack,
    login_stack,
)
from tests.services import free_port

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redirect_uri() -> str:
    return f"http://127.0.0.1:{free_port()}/callback"


@pytest.fixture
def stack(tmp_path: Path, redirect_uri: str) -> Iterator[Stack]:
    with login_stack(tmp_path, redirect_uri, Platform.LINUX, DeviceTraits()) as running:
        yield running


def _start(
    stack: Stack,
    redirect_uri: str,
    *args: str,
    secret: str | None = None,
    config: Path | None = None,
) -> Any:
    """The command; with ``config`` it reads the server (public_url) from that file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env["PYTHONPATH"] = str(ROOT)
    if secret is not None:
        env["POSTURE_TRY_LOGIN_CLIENT_SECRET"] = secret
    root = [sys.executable, "-m", "posture_gateway.cli.main"]
    server = ["--server", stack.url]
    if config is not None:
        root, server = [*root, "--config", str(config)], []
    command = [*root, "try-login", "--no-browser", *server]
    command += ["--client-id", CLIENT_ID, "--redirect-uri", redirect_uri]
    return subprocess.Popen(
        [*command, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _authorize_url(proc: Any, stack: Stack) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(stack.url + "/oauth/authorize?"):
            return str(line.strip())
    proc.kill()
    raise AssertionError(f"no authorization URL printed:\n{proc.communicate()}")


def _finish(proc: Any) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def _play_browser(stack: Stack, authorize_url: str, redirect_uri: str) -> httpx.Response:
    """What a person does in the browser: password, the device check, back to the RP."""
    with httpx.Client(timeout=15) as http:
        page = _follow(http, http.get(authorize_url), redirect_uri)
        assert page.status_code == 200 and 'name="password"' in page.text, page.text[:2000]
        posted = http.post(
            stack.url + "/login/password",
            data={"csrf_token": _field(page.text, "csrf_token"), "username": USERNAME,
                  "password": PASSWORD},
        )  # fmt: skip
        device_page = _follow(http, posted, redirect_uri)
        match = _DEVICE_CONFIG.search(device_page.text)
        assert match, device_page.text[:2000]
        config = json.loads(match.group(1))
        proof = httpx.get(
            f"http://127.0.0.1:{config['port']}/v1/login-proof",
            params={"nonce": config["nonce"], "aud": config["aud"]},
            headers={"Origin": stack.url},
            timeout=10,
        )
        assert proof.status_code == 200, proof.text
        answer = http.post(
            stack.url + "/login/device",
            data={"csrf_token": _field(device_page.text, "csrf_token"), "nonce": config["nonce"],
                  "proof": proof.json()["proof"]},
        )  # fmt: skip
        if answer.status_code == 200 and 'data-outcome="warn"' in answer.text:
            answer = http.post(
                stack.url + "/login/continue",
                data={"csrf_token": _field(answer.text, "csrf_token"),
                      "ticket": _field(answer.text, "ticket")},
            )  # fmt: skip
        answer = _follow(http, answer, redirect_uri)
        assert answer.status_code in (302, 303), f"{answer.status_code}:\n{answer.text[:2000]}"
        callback = answer.headers["Location"]
        assert callback.startswith(redirect_uri + "?"), callback
        return http.get(urljoin(redirect_uri, callback))


def test_try_login_signs_in_and_prints_the_verified_claims(stack: Stack, redirect_uri: str) -> None:
    proc = _start(stack, redirect_uri, "--client-secret", CLIENT_SECRET)
    landed = _play_browser(stack, _authorize_url(proc, stack), redirect_uri)
    assert landed.status_code == 200 and "received the callback" in landed.text
    code, out, err = _finish(proc)
    assert code == 0, f"{out}\n{err}"
    assert "ID token claims (verified)" in out
    assert "posture_outcome" in out and USER_ID in out
    assert f"verified sign-in: sub={USER_ID} posture_outcome=allow" in out
    assert stack.device.device_id in out  # the device_id claim, from the helper's proof
    assert "Traceback" not in err


def test_try_login_with_a_wrong_secret_is_refused_at_the_token_endpoint(
    stack: Stack, redirect_uri: str, tmp_path: Path
) -> None:
    config = tmp_path / "operator.yaml"  # the server is the configured public_url
    config.write_text(f"data_dir: {tmp_path / 'op'}\npublic_url: {stack.url}\n", "utf-8")
    wrong = "not-the-" + CLIENT_SECRET
    proc = _start(stack, redirect_uri, secret=wrong, config=config)  # via the env var
    _play_browser(stack, _authorize_url(proc, stack), redirect_uri)
    code, out, err = _finish(proc)
    assert code == 1, f"{out}\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: refused at the token endpoint: invalid_client"), err
    assert "verified sign-in" not in out and "Traceback" not in err


def test_try_login_refuses_a_callback_with_a_forged_state(stack: Stack, redirect_uri: str) -> None:
    proc = _start(stack, redirect_uri, "--client-secret", CLIENT_SECRET)
    _authorize_url(proc, stack)
    answer = httpx.get(redirect_uri, params={"code": "stolen-code", "state": "forged"})
    assert answer.status_code == 200
    code, out, err = _finish(proc)
    assert code == 1, f"{out}\n{err}"
    assert err.strip().splitlines() == [
        "Error: callback refused: its state is not the one sent (forged or stale)"
    ], err
    assert stack.codes_issued() == 0  # nothing was signed in


def test_try_login_reports_an_error_callback_as_the_refusal(
    stack: Stack, redirect_uri: str
) -> None:
    proc = _start(stack, redirect_uri, "--client-secret", CLIENT_SECRET)
    url = _authorize_url(proc, stack)
    state = dict(httpx.URL(url).params)["state"]
    httpx.get(redirect_uri, params={"error": "access_denied", "state": state})
    code, out, err = _finish(proc)
    assert code == 1, f"{out}\n{err}"
    assert err.strip().splitlines() == ["Error: sign-in refused: access_denied"], err


def test_try_login_without_a_callback_times_out_with_one_line(
    stack: Stack, redirect_uri: str
) -> None:
    proc = _start(stack, redirect_uri, "--client-secret", CLIENT_SECRET, "--timeout", "1s")
    _authorize_url(proc, stack)
    code, out, err = _finish(proc)
    assert code == 1, f"{out}\n{err}"
    assert err.strip().splitlines() == [
        "Error: no callback within 1s (--timeout); nothing signed in"
    ], err
