"""Every process of one server shares its generated secrets (issue 7, finding 2).

``posture serve`` runs 2 workers by default. ``create_app`` used to draw a random Flask
``SECRET_KEY`` per process when none was configured, so a login started on one worker (session
cookie) ended in ``login_expired`` on the other. The key is now generated once and kept in
``<data_dir>/secret-key`` (0600, created atomically); a file that is there but unusable stops
the start with a message naming it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Flask

from mdm_core.support.secret_file import SecretFileError, load_or_create_secret
from posture_gateway.app import create_app
from posture_gateway.settings import ConfigError, Settings
from tests.integration.oidc.conftest import ISSUER, Browser, write_files

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[3]


def _settings(tmp_path: Path, **extra: object) -> Settings:
    clients, users = write_files(tmp_path)
    return Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "dev_mode": True,
            "public_url": ISSUER,
            "policy_dir": ROOT / "policies",
            "oidc": {"clients_file": clients, "users_file": users},
            **extra,
        }
    )


def _app(settings: Settings) -> Flask:
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


def test_a_login_started_on_one_worker_continues_on_another(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first, second = _app(settings), _app(settings)  # two workers of one server
    try:
        assert first.secret_key == second.secret_key
        on_first = Browser(first.test_client())
        started = on_first.authorize()
        assert started.status_code == 303
        cookie = on_first.client.get_cookie("session")
        assert cookie is not None
        on_second = second.test_client()  # the same browser, its next request on worker 2
        on_second.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
        page = on_second.get("/login")
        assert page.status_code == 200, page.get_data(as_text=True)
        assert 'name="password"' in page.get_data(as_text=True)
        assert "login_expired" not in page.get_data(as_text=True)
        key_file = settings.data_dir / "secret-key"
        assert key_file.stat().st_mode & 0o777 == 0o600
    finally:
        for app in (first, second):
            app.extensions["posture"].core.close()


def test_a_configured_secret_key_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    app = _app(_settings(tmp_path, secret_key="k" * 48))
    try:
        assert app.secret_key == "k" * 48
        assert not (tmp_path / "data" / "secret-key").exists()
    finally:
        app.extensions["posture"].core.close()


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        ("x" * 43, 0o644, "must be 0600"),
        ("x" * 43, 0o660, "must be 0600"),
        ("short", 0o600, "does not hold a secret"),
        ("", 0o600, "does not hold a secret"),
        ("ü" * 50, 0o600, "does not hold a secret"),
    ],
)
def test_an_unusable_key_file_stops_the_start_and_is_left_alone(
    tmp_path: Path, content: str, mode: int, expected: str
) -> None:
    key_file = tmp_path / "data" / "secret-key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text(content, encoding="utf-8")
    key_file.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        create_app(_settings(tmp_path))
    assert str(key_file) in str(caught.value) and expected in str(caught.value)
    assert key_file.read_text(encoding="utf-8") == content  # never silently replaced
    assert key_file.stat().st_mode & 0o777 == mode


def test_a_key_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "data" / "secret-key").mkdir(parents=True)  # readable by nobody as a file
    with pytest.raises(ConfigError, match="secret-key"):
        create_app(_settings(tmp_path))
    target = tmp_path / "elsewhere"
    target.write_text("y" * 43, encoding="ascii")
    target.chmod(0o600)
    link = tmp_path / "other" / "secret-key"
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(SecretFileError, match="cannot read"):
        load_or_create_secret(link)  # a planted symlink is not followed


_RACE = """
import sys, time
from pathlib import Path
from mdm_core.support.secret_file import load_or_create_secret
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.001)
print(load_or_create_secret(Path(sys.argv[2])))
"""


def test_processes_starting_at_once_agree_on_one_secret(tmp_path: Path) -> None:
    go, target = tmp_path / "go", tmp_path / "data" / "secret-key"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, str(go), str(target)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    time.sleep(0.5)  # let every process reach the start line
    go.touch()
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        answers.append(out.strip())
    assert len(set(answers)) == 1 and len(answers[0]) >= 43
    assert target.read_text(encoding="ascii").strip() == answers[0]
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret-key"]  # no temp left


_ENSURE = """
import sys, time
from pathlib import Path
from posture_gateway.signing.key_ring import KeyRing
ring = KeyRing.open(Path(sys.argv[2]), passphrase=None, dev_mode=True)
ring.active("RS256")  # loaded: this worker has looked at the ring before the race
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.001)
print(ring.ensure("ES256").kid, flush=True)
time.sleep(0.3)
print(ring.active("ES256").kid)
"""


def test_workers_starting_at_once_agree_on_the_signing_keys(tmp_path: Path) -> None:
    """Two workers that both find no ES256 key at start must not each make one (the second
    would retire the first at once, and the first worker's tokens would stop verifying)."""
    from posture_gateway.signing.key_ring import KeyRing

    ring_dir = tmp_path / "oidc-keys"
    KeyRing.open(ring_dir, passphrase=None, dev_mode=True)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ENSURE, str(go), str(ring_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    time.sleep(1.5)  # every process has loaded the ring
    go.touch()
    kids = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        kids.extend(out.split())
    assert len(set(kids)) == 1, kids
    ring = KeyRing.open(ring_dir, passphrase=None, dev_mode=True)
    assert [k.kid for k in ring.keys if k.alg == "ES256"] == [kids[0]]
