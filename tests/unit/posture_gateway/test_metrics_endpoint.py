"""``/metrics``: a bearer token (constant time) on the main listener, or a separate listener;
refused when neither is configured; the multi-process directory is emptied at start."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from pydantic import ValidationError

from posture_gateway.app import create_app
from posture_gateway.observability import metrics as metrics_module
from posture_gateway.observability.metrics import (
    MULTIPROC_ENV,
    prepare_multiprocess_dir,
    serve_metrics,
)
from posture_gateway.observability.settings import MetricsSettings
from posture_gateway.settings import Settings

TOKEN = "t" * 40


def _app(tmp_path: Path, **metrics: Any) -> Flask:
    return create_app(
        Settings.model_validate(
            {"data_dir": tmp_path / "data", "dev_mode": True, "metrics": metrics}
        )
    )


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = _app(tmp_path, token=TOKEN)
    yield app
    app.extensions["posture"].core.close()


def test_right_token_gets_prometheus_text(app: Flask) -> None:
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "posture_access_decisions_total" in response.get_data(as_text=True) or (
        "# HELP posture_access_decisions_total" in response.get_data(as_text=True)
    )
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN],
)
def test_missing_or_wrong_token_is_refused(app: Flask, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json == {
        "error": "unauthorized",
        "reason": "a valid bearer metrics token is required",
    }
    assert "posture_" not in response.get_data(as_text=True)


def test_no_token_and_no_listener_refuses_every_scrape(tmp_path: Path) -> None:
    app = _app(tmp_path)
    try:
        response = app.test_client().get("/metrics", headers={"Authorization": "Bearer "})
        assert response.status_code == 403
        assert response.json["error"] == "metrics_token_not_set"
    finally:
        app.extensions["posture"].core.close()


def test_with_a_separate_listener_the_main_one_has_no_metrics(tmp_path: Path) -> None:
    app = _app(tmp_path, token=TOKEN, listen="127.0.0.1:9464")
    try:
        response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 404
    finally:
        app.extensions["posture"].core.close()


def test_disabled_metrics_are_not_served(tmp_path: Path) -> None:
    app = _app(tmp_path, enabled=False, token=TOKEN)
    try:
        response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 404
    finally:
        app.extensions["posture"].core.close()


def test_separate_listener_serves_the_metrics() -> None:
    server, thread = serve_metrics("127.0.0.1:0")
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5)
        assert response.status_code == 200
        assert "posture_device_checkins" in response.text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    "bad",
    [{"token": "short"}, {"listen": "9464"}, {"listen": "host:99999"}, {"listen": "a b:1"}],
)
def test_bad_metrics_settings_name_the_key(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as caught:
        MetricsSettings.model_validate(bad)
    assert next(iter(bad)) in str(caught.value)


def test_multiprocess_dir_is_emptied_and_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "placeholder")  # so teardown removes what we export
    monkeypatch.delenv(MULTIPROC_ENV)
    stale = tmp_path / "prometheus" / "counter_123.db"
    stale.parent.mkdir()
    stale.write_bytes(b"old counts")
    directory = prepare_multiprocess_dir(tmp_path)
    assert directory == (tmp_path / "prometheus").resolve()
    assert list(directory.iterdir()) == []
    assert os.environ[MULTIPROC_ENV] == str(directory)
    # A scrape now reads the (empty) multi-process directory, not this process's registry.
    assert metrics_module.registry() is not metrics_module.REGISTRY


def test_the_multiprocess_export_does_not_leak_into_other_tests() -> None:
    assert MULTIPROC_ENV not in os.environ


def test_the_separate_listener_reports_the_live_credentials_gauge(tmp_path: Path) -> None:
    """``metrics.listen``: the listener process reads the database its environment names
    (never its command line) and reports the gauge (0 on an empty store)."""
    import subprocess
    import sys
    import time

    from mdm_core.storage.sql.database import Database
    from posture_gateway.observability.metrics import LIVE_CREDENTIALS_DB_ENV
    from tests.services import free_port

    url = f"sqlite:///{tmp_path}/m.sqlite3"
    database = Database(url)
    database.migrate()
    database.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    env[LIVE_CREDENTIALS_DB_ENV] = url
    child = subprocess.Popen(  # noqa: S603 - this interpreter and our module
        [
            sys.executable,
            "-m",
            "posture_gateway.observability.metrics_server",
            f"127.0.0.1:{port}",
            str(os.getpid()),
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert "posture_noncompliant_devices_with_live_credentials 0.0" in text, text[-1500:]
    finally:
        child.terminate()
        child.wait(timeout=10)
