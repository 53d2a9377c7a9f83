"""``posture serve`` starts a production WSGI server that answers; ``posture db migrate`` works;
a bad setting fails at start naming its key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.services import free_port

POSTURE = [sys.executable, "-m", "posture_gateway.cli.main"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env.update(POSTURE_DATA_DIR=str(tmp_path / "data"), POSTURE_DEV_MODE="true", **extra)
    return env


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_serve_answers_health_and_readiness(tmp_path: Path, server: str) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*POSTURE, "serve", "--port", str(port), "--workers", "1", "--server", server],
            env=_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready is not None, log.read_text(errors="replace")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_db_migrate_and_bad_setting(tmp_path: Path) -> None:
    ok = subprocess.run(
        [*POSTURE, "db", "migrate"], env=_env(tmp_path), capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "schema up to date (sqlite)" in ok.stdout
    bad = subprocess.run(
        [*POSTURE, "db", "migrate"],
        env=_env(tmp_path, POSTURE_MAX_REQUEST_BYTES="lots"),
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    assert "max_request_bytes" in bad.stderr + bad.stdout
