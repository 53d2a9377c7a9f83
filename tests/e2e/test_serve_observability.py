"""``posture serve`` with two workers: one set of counts across workers (multi-process
metrics), the separate metrics listener, JSON request lines with the caller's request id."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import POSTURE, _env
from tests.services import free_port


def _bad_checkin(url: str, i: int) -> int:
    response = httpx.post(
        url + "/mdm/v1/checkin",
        json={"format": "agent", "report": {}},
        headers={"X-Request-ID": f"probe-{i}", "Connection": "close"},
        timeout=10,
    )
    assert response.headers["X-Request-ID"] == f"probe-{i}"
    return response.status_code


def _pids(log: Path) -> set[int]:
    return {
        line["pid"]
        for line in (json.loads(x) for x in log.read_text().splitlines() if x.startswith("{"))
        if line.get("event") == "request" and line.get("path") == "/mdm/v1/checkin"
    }


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(log.read_text(errors="replace"))


def _checkins_counted(metrics_url: str) -> float:
    total = 0.0
    for line in httpx.get(metrics_url, timeout=5).text.splitlines():
        if line.startswith("posture_device_checkins_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_two_workers_one_count_separate_listener_and_json_lines(
    tmp_path: Path, server: str
) -> None:
    port, metrics_port = free_port(), free_port()
    url, metrics_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    stale = tmp_path / "data" / "prometheus" / "counter_1.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"counts of a previous run")
    log = tmp_path / "server.log"
    env = _env(tmp_path, POSTURE_METRICS__LISTEN=f"127.0.0.1:{metrics_port}")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*POSTURE, "serve", "--port", str(port), "--workers", "2", "--server", server,
             "--log-format", "json"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_ready(url, proc, log)
        assert not stale.exists()  # the previous run's counts are gone
        # Concurrent requests on fresh connections, until both workers have answered some
        # (the logs name the pid): only then does one total prove the counts are summed.
        sent = 0
        for _ in range(6):
            with ThreadPoolExecutor(max_workers=8) as pool:
                answers = list(pool.map(lambda i: _bad_checkin(url, i), range(sent, sent + 24)))
            sent += 24
            assert all(a == 401 for a in answers), answers
            if len(_pids(log)) == 2:
                break
        assert len(_pids(log)) == 2, "one worker answered everything"
        # Every scrape sees all of them, whichever worker counted them.
        deadline = time.monotonic() + 10
        while _checkins_counted(metrics_url) < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        for _ in range(3):
            assert _checkins_counted(metrics_url) == sent
        # The main listener has no /metrics when a separate one is configured.
        assert httpx.get(url + "/metrics", timeout=5).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    probes = [x for x in lines if x.get("event") == "request" and x["path"] == "/mdm/v1/checkin"]
    assert {x["request_id"] for x in probes} == {f"probe-{i}" for i in range(sent)}
    assert all(x["status"] == 401 and x["method"] == "POST" for x in probes)


@pytest.mark.parametrize(("fmt", "json_lines"), [("json", True), ("text", False)])
def test_global_log_format_option(tmp_path: Path, fmt: str, json_lines: bool) -> None:
    done = subprocess.run(
        [*POSTURE, "--log-format", fmt, "db", "migrate"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert lines, "nothing was logged"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            parsed.append(None)
    if json_lines:
        assert all(
            isinstance(p, dict) and {"ts", "level", "logger", "msg"} <= set(p) for p in parsed
        )
    else:
        assert all(p is None for p in parsed) and " INFO " in done.stderr


def test_bad_log_format_names_the_option(tmp_path: Path) -> None:
    done = subprocess.run(
        [*POSTURE, "--log-format", "xml", "db", "migrate"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--log-format" in done.stderr
    assert "Traceback" not in done.stderr
