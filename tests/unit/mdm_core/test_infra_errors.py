"""Redis failures become InfraError types; clients are built with bounded timeouts."""

from __future__ import annotations

import time

import pytest
import redis

from mdm_core.domain.infra_errors import InfraCorrupt, InfraError, InfraUnavailable, redis_errors
from mdm_core.redis_backends.client import connect_redis, require_timeouts
from tests.services import free_port


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (redis.exceptions.ConnectionError("refused"), InfraUnavailable),
        (redis.exceptions.TimeoutError("slow"), InfraUnavailable),
        (redis.exceptions.BusyLoadingError("loading"), InfraUnavailable),
        (redis.exceptions.AuthenticationError("bad password"), InfraUnavailable),
        (redis.exceptions.ReadOnlyError("replica"), InfraUnavailable),
        (redis.exceptions.ResponseError("WRONGTYPE"), InfraError),
        (redis.exceptions.NoScriptError("NOSCRIPT"), InfraError),
        (redis.exceptions.DataError("bad arg"), InfraError),
    ],
)
def test_redis_failures_are_translated(raised: Exception, expected: type[InfraError]) -> None:
    with pytest.raises(InfraError) as info:
        with redis_errors("GET"):
            raise raised
    assert type(info.value) is expected
    assert info.value.__cause__ is raised
    assert info.value.backend == "redis" and info.value.operation == "GET"
    assert str(info.value).startswith("redis GET failed: ")


def test_other_exceptions_pass_through_untouched() -> None:
    with pytest.raises(KeyError):
        with redis_errors("GET"):
            raise KeyError("not ours")


def test_reasons_are_machine_readable() -> None:
    assert InfraError.reason == "infra_error"
    assert InfraUnavailable.reason == "infra_unavailable"
    assert InfraCorrupt.reason == "infra_corrupt"
    assert issubclass(InfraUnavailable, InfraError) and issubclass(InfraCorrupt, InfraError)


def test_connect_redis_fails_fast_when_nothing_listens() -> None:
    client = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5, retries=1)
    try:
        started = time.monotonic()
        with pytest.raises(InfraUnavailable):
            with redis_errors("PING"):
                client.ping()
        assert time.monotonic() - started < 2.0
    finally:
        client.close()


def test_connect_redis_builds_a_bytes_client_with_timeouts(redis_url: str) -> None:
    client = connect_redis(redis_url, timeout=0.75)
    try:
        assert require_timeouts(client) == 0.75
        assert client.ping() is True
        client.set(b"test:bytes", b"\xff")
        assert client.get(b"test:bytes") == b"\xff"
    finally:
        client.close()


@pytest.mark.parametrize(("timeout", "retries"), [(0, 1), (-1, 1), (1, -1)])
def test_connect_redis_rejects_bad_settings(timeout: float, retries: int) -> None:
    with pytest.raises(ValueError):
        connect_redis("redis://127.0.0.1:1/0", timeout=timeout, retries=retries)
