"""``offboarding.interval`` (default 5 s, validated) and the runner: started only in served
workers (``POSTURE_SERVE_WORKER=1``) or with ``force``, stopped with its lease released."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from mdm_core.offboarding.service import LEASE_NAME
from posture_gateway.app import create_app
from posture_gateway.offboarding.runner import init_offboarding_runner
from posture_gateway.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]


def test_default_and_environment() -> None:
    assert Settings().offboarding.interval == timedelta(seconds=5)
    settings = load_settings(environ={"POSTURE_OFFBOARDING__INTERVAL": "2m"})
    assert settings.offboarding.interval == timedelta(minutes=2)


@pytest.mark.parametrize("key,value", [("INTERVAL", "0s"), ("INTERVAL", "-5s"), ("SURPRISE", "1")])
def test_bad_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match="offboarding"):
        load_settings(environ={f"POSTURE_OFFBOARDING__{key}": value})


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        Settings(
            data_dir=tmp_path,
            dev_mode=True,
            policy_dir=ROOT / "policies",
            offboarding={"interval": "1s"},  # type: ignore[arg-type]
        )
    )
    try:
        yield app
    finally:
        app.extensions["posture"].core.close()


def test_not_started_outside_a_served_worker(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTURE_SERVE_WORKER", raising=False)
    assert init_offboarding_runner(app) is None
    assert app.extensions["posture"].core.offboarding._thread is None


def test_started_in_a_served_worker_then_stopped_with_the_lease_released(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTURE_SERVE_WORKER", "1")
    service = init_offboarding_runner(app)
    assert service is not None and service.interval == timedelta(seconds=1)
    core = app.extensions["posture"].core
    deadline = 50
    while deadline and LEASE_NAME not in _holders(app):
        time.sleep(0.1)
        deadline -= 1
    assert _holders(app).get(LEASE_NAME) == service.holder  # the loop runs, holding the lease
    service.stop()
    assert service._thread is None and LEASE_NAME not in _holders(app)
    service.stop()  # twice: nothing
    assert core.offboarding is service


def _holders(app: Flask) -> dict[str, str]:
    with app.extensions["posture"].core.storage.unit_of_work() as uow:
        return {name: holder for name, (holder, _) in uow.leases.holders().items()}
