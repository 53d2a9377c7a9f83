"""Fixtures for connector tests: a real local JSON server (no mocked transports)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from idp_connectors.http import make_client
from tests.helpers.json_server import JsonServer


@pytest.fixture
def json_server() -> Iterator[JsonServer]:
    server = JsonServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    client = make_client()
    try:
        yield client
    finally:
        client.close()
