"""The ``signals`` settings are checked at start against the OpenID provider and the key
ring; each mistake stops the start naming its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from posture_gateway.app import create_app
from posture_gateway.settings import ConfigError, Settings
from tests.unit.posture_gateway.signals.conftest import write_clients


def _start(tmp_path: Path, signals: dict[str, Any]) -> None:
    clients = write_clients(tmp_path / "clients.yaml", ("rx-a",))
    with (tmp_path / "clients.yaml").open("a", encoding="utf-8") as out:
        out.write(
            "  - client_id: spa\n    token_endpoint_auth_method: none\n"
            "    redirect_uris: ['https://spa.example/cb']\n"
        )
    app = create_app(
        Settings(
            data_dir=tmp_path / "data",
            dev_mode=True,
            public_url="https://gw.example",
            oidc={"clients_file": clients},
            signals=signals,
        )
    )
    app.extensions["posture_signals"].close()
    app.extensions["posture"].core.close()


@pytest.mark.parametrize(
    ("signals", "words"),
    [
        ({"receivers": [{"client_id": "nobody"}]}, "signals.receivers.0.client_id"),
        ({"receivers": [{"client_id": "spa"}]}, "public client"),
        (
            {"receivers": [{"client_id": "okta", "push_endpoint": "http://okta.example/e"}]},
            "signals.receivers.0.push_endpoint",
        ),
        (
            {
                "receivers": [
                    {
                        "client_id": "okta",
                        "push_endpoint": "https://okta.example/e",
                        "events": ["urn:example:nope"],
                    }
                ]
            },
            "signals.receivers.0.events",
        ),
    ],
)
def test_a_bad_receiver_stops_the_start(
    tmp_path: Path, signals: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        _start(tmp_path, signals)


@pytest.mark.parametrize(
    "signals",
    [
        {"receivers": [{"client_id": "rx-a"}, {"client_id": "rx-a"}]},
        {"receivers": [{"client_id": "bad id!"}]},
        {"default_subjects": "SOME"},
        {"push": {"backoff_base": "10s", "backoff_max": "1s"}},
        {"push": {"lease": "2s"}},
        {"poll_max_wait": "5m"},
        {"unknown_key": 1},
    ],
)
def test_invalid_signals_settings_are_refused(signals: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(signals=signals)


def test_a_push_only_receiver_needs_no_oauth_client(tmp_path: Path) -> None:
    _start(
        tmp_path,
        {"receivers": [{"client_id": "okta", "push_endpoint": "https://org.okta.example/e"}]},
    )
