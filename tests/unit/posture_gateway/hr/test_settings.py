"""The ``hr`` settings: exactly one secret per source, read from a file once, validated at
start with the key named; secrets never in a repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from posture_gateway.settings import ConfigError, Settings, load_settings

SECRET = "s" * 40


def _load(tmp_path: Path, body: str) -> Settings:
    config = tmp_path / "config.yaml"
    config.write_text(body)
    return load_settings(config, environ={})


def test_off_by_default() -> None:
    assert not Settings().hr.enabled


def test_inline_and_file_secrets(tmp_path: Path) -> None:
    key = tmp_path / "bamboo.key"
    key.write_text("b" * 40 + "\n")
    settings = _load(
        tmp_path,
        f"hr:\n  bamboohr:\n    secret_file: {key}\n  generic:\n    secret: {SECRET}\n",
    )
    assert settings.hr.bamboohr is not None and settings.hr.generic is not None
    assert settings.hr.bamboohr.secret_bytes() == b"b" * 40
    assert settings.hr.generic.secret_bytes() == SECRET.encode()
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("hr:\n  bamboohr: {}\n", "exactly one of secret and secret_file"),
        (f"hr:\n  bamboohr:\n    secret: {SECRET}\n    secret_file: /x\n", "exactly one"),
        ("hr:\n  bamboohr:\n    secret_file: /nonexistent/key\n", "cannot be read"),
        ("hr:\n  generic:\n    secret: short\n", "fewer than 16"),
        (f"hr:\n  bamboohr:\n    secret: {SECRET}\n    timezone: Mars/Base\n", "time zone"),
        (
            f"hr:\n  bamboohr:\n    secret: {SECRET}\n  generic:\n    secret: {SECRET}\n",
            "different",
        ),
        (
            f"hr:\n  bamboohr:\n    secret: {SECRET}\n    match_attribute: phone\n",
            "match_attribute",
        ),
        (f"hr:\n  bamboohr:\n    secret: {SECRET}\n    unknown: 1\n", "unknown"),
        ("hr:\n  max_age: 0s\n", "max_age"),
        ("hr:\n  delivery_retention: 5m\n", "delivery_retention must be longer"),
        ("hr:\n  max_age: 2h\n  delivery_retention: 1h\n", "delivery_retention"),
    ],
)
def test_refused_at_start(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, body)
    assert needle in str(caught.value)
    assert "hr" in str(caught.value)
    assert SECRET not in str(caught.value)
