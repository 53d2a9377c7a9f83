"""One duration syntax in configuration: ``30s``, ``2m``, ``1h``, ``7d`` in every section."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mdm_core.support.durations import parse_config_duration
from posture_gateway.settings import ConfigError, Settings, load_settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("2m", timedelta(minutes=2)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("2500ms", timedelta(milliseconds=2500)),
        ("120", timedelta(seconds=120)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_the_one_syntax(text: str, expected: timedelta) -> None:
    assert parse_config_duration(text) == expected


@pytest.mark.parametrize("text", ["PT10M", "10 minutes", "1h30m", "-5s", "5x", "", "m"])
def test_anything_else_is_refused_with_the_fix(text: str) -> None:
    with pytest.raises(ValueError, match=r"use a number and a unit: 30s, 2m, 1h, 7d"):
        parse_config_duration(text)


def test_every_settings_section_reads_it_from_the_environment() -> None:
    settings = load_settings(
        None,
        {
            "POSTURE_PROOF__MAX_AGE": "2m",
            "POSTURE_CA__DEVICE_CERT_LIFETIME": "7d",
            "POSTURE_OIDC__CODE_TTL": "30s",
            "POSTURE_OIDC__REFRESH_TOKEN_TTL": "1h",
            "POSTURE_INTEGRATIONS__OKTA__BUDGET": "2500ms",
        },
    )
    assert settings.proof.max_age == timedelta(minutes=2)
    assert settings.ca.device_cert_lifetime == timedelta(days=7)
    assert settings.oidc.code_ttl == timedelta(seconds=30)
    assert settings.oidc.refresh_token_ttl == timedelta(hours=1)
    assert settings.integrations.okta.budget == timedelta(milliseconds=2500)


def test_python_values_still_work() -> None:
    settings = Settings.model_validate({"proof": {"max_age": timedelta(seconds=9), "leeway": 3}})
    assert settings.proof.max_age == timedelta(seconds=9)
    assert settings.proof.leeway == timedelta(seconds=3)


def test_a_bad_duration_names_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"POSTURE_OIDC__LOGIN_TTL": "PT10M"})
    assert "oidc.login_ttl: not a duration: 'PT10M'" in str(err.value)
    assert "Value error" not in str(err.value)


def test_non_duration_strings_are_untouched() -> None:
    settings = load_settings(
        None, {"POSTURE_PUBLIC_URL": "https://gw.example", "POSTURE_DEV_MODE": "1"}
    )
    assert settings.public_url == "https://gw.example" and settings.dev_mode
