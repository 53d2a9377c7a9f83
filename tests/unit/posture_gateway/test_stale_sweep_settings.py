"""``stale_sweep.*``: on by default, 30 s, 500 devices; off only when said so; validated."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mdm_core.policy.staleness import StaleSweep
from posture_gateway.settings import ConfigError, Settings, load_settings


def test_defaults() -> None:
    config = Settings().stale_sweep
    assert config.enabled is True
    assert config.interval == timedelta(seconds=30)
    assert config.batch == 500


def test_environment_and_durations() -> None:
    settings = load_settings(
        environ={
            "POSTURE_STALE_SWEEP__ENABLED": "false",
            "POSTURE_STALE_SWEEP__INTERVAL": "2m",
            "POSTURE_STALE_SWEEP__BATCH": "50",
        }
    )
    assert settings.stale_sweep.enabled is False
    assert settings.stale_sweep.interval == timedelta(minutes=2)
    assert settings.stale_sweep.batch == 50


@pytest.mark.parametrize(
    "key,value",
    [("INTERVAL", "0s"), ("BATCH", "0"), ("BATCH", "100000"), ("SURPRISE", "1")],
)
def test_bad_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match="stale_sweep"):
        load_settings(environ={f"POSTURE_STALE_SWEEP__{key}": value})


def test_the_sweep_refuses_nonsense(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        StaleSweep(None, lambda: None)  # type: ignore[arg-type, return-value]
