"""Settings for the shared limits (enroll, failed logins, proxies) from the environment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from posture_gateway.app import core_config
from posture_gateway.settings import ConfigError, load_settings


def test_limit_settings_reach_the_core_and_agent_variables_are_not_settings() -> None:
    settings = load_settings(
        environ={
            "POSTURE_ENROLL__LIMIT_PER_SOURCE": "7",
            "POSTURE_ENROLL__TARGET_WINDOW": "5m",
            "POSTURE_TRUSTED_PROXY_HOPS": "1",
            "POSTURE_OIDC__MAX_FAILED_LOGINS_PER_SOURCE": "9",
            # the reference agent's variables on the same host are not server settings
            "POSTURE_ENROLLMENT_SECRET": "s3cret",
            "POSTURE_AGENT_STATE_DIR": "/var/lib/posture-agent",
        }
    )
    config = core_config(settings)
    assert config.enroll_limit_per_source == 7
    assert config.enroll_target_window == timedelta(minutes=5)
    assert settings.trusted_proxy_hops == 1
    assert settings.oidc.max_failed_logins_per_source == 9
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("POSTURE_ENROLL__LIMIT_PER_SOURCE", "0", "enroll.limit_per_source"),
        ("POSTURE_TRUSTED_PROXY_HOPS", "-1", "trusted_proxy_hops"),
        ("POSTURE_OIDC__MAX_FAILED_LOGINS", "0", "oidc.max_failed_logins"),
        ("POSTURE_READ_MODEL__WARM_DEVICES", "-1", "read_model.warm_devices"),
    ],
)
def test_bad_limits_are_refused_naming_the_key(key: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ={key: value})


def test_the_read_model_warm_up_setting_defaults_to_50000_devices() -> None:
    assert load_settings(environ={}).read_model.warm_devices == 50_000
    got = load_settings(environ={"POSTURE_READ_MODEL__WARM_DEVICES": "0"})
    assert got.read_model.warm_devices == 0
