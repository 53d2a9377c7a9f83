"""Every way the README shows of passing a configuration reaches every worker of both servers
(issue 7, finding 2): ``posture --config FILE serve``, ``POSTURE_CONFIG=FILE posture serve``
and ``POSTURE_*`` variables alone, under granian and gunicorn with the default 2 workers.

Before the fix the workers built their app from the environment alone: with ``--config`` they
did not see the file and failed to start (``ca.passphrase is required``).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.deployment import _env, _start, _stop, _wait_until
from tests.e2e.live_server import POLICY_DIR
from tests.services import free_port

__all__: list[str] = []

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize(
    ("how", "server"),
    [
        ("--config", "granian"),
        ("--config", "gunicorn"),
        ("POSTURE_CONFIG", "gunicorn"),
        ("POSTURE_* only", "granian"),
    ],
)
def test_every_way_of_passing_the_configuration_reaches_both_workers(
    tmp_path: Path, how: str, server: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {
        "data_dir": str(tmp_path / "server"),
        "dev_mode": "true",
        "public_url": url,
        "policy_dir": str(POLICY_DIR),
    }
    config = tmp_path / "posture.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in settings.items()), encoding="utf-8")
    args = ["serve", "--port", str(port), "--server", server]
    extra: dict[str, str] = {}
    if how == "--config":
        args = ["--config", str(config), *args]
    elif how == "POSTURE_CONFIG":
        extra["POSTURE_CONFIG"] = str(config)
    else:
        extra.update({f"POSTURE_{k.upper()}": v for k, v in settings.items()})
    process = _start("posture serve", args, _env(extra), tmp_path)
    try:

        def ready() -> bool:
            return httpx.get(url + "/readyz", timeout=2).status_code == 200

        _wait_until(ready, "posture serve", process)
        started = "Started worker-" if server == "granian" else "Booting worker with pid"
        deadline = time.monotonic() + 20
        while process.output().count(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(20):  # fresh connections: both workers answer
            assert httpx.get(url + "/readyz", timeout=5).status_code == 200
        time.sleep(0.5)
        log = process.output()
        assert process.proc.poll() is None, log
        assert f"with {server} (2 workers)" in log, log
        assert log.count(started) == 2, log  # two workers, none restarted after a failure
        assert "Traceback" not in log and "Error" not in log, log
    finally:
        _stop(process)
