"""In-process nonce store: single use, expiry, atomic under concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from posture_gateway.access.nonces import InProcessNonceStore, NonceKind, NonceStore, nonce_purpose

P = nonce_purpose(NonceKind.LOGIN_DEVICE, audience="https://gw.example")


class Tick:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_single_use() -> None:
    store: NonceStore = InProcessNonceStore()
    nonce = store.issue(timedelta(seconds=30), purpose=P)
    assert len(nonce) >= 40
    assert store.consume(nonce, purpose=P) is True
    assert store.consume(nonce, purpose=P) is False
    assert store.consume("never-issued", purpose=P) is False
    assert store.consume("", purpose=P) is False


def test_expiry() -> None:
    clock = Tick()
    store = InProcessNonceStore(clock=clock)
    nonce = store.issue(timedelta(seconds=30), purpose=P)
    clock.t += 30
    assert store.consume(nonce, purpose=P) is False


def test_nonpositive_ttl_refused() -> None:
    with pytest.raises(ValueError):
        InProcessNonceStore().issue(timedelta(0), purpose=P)


def test_concurrent_consume_wins_once() -> None:
    store = InProcessNonceStore()
    nonce = store.issue(timedelta(seconds=30), purpose=P)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def spend() -> None:
        barrier.wait()
        results.append(store.consume(nonce, purpose=P))

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_sweep_drops_expired() -> None:
    clock = Tick()
    store = InProcessNonceStore(clock=clock)
    for _ in range(1100):
        store.issue(timedelta(seconds=1), purpose=P)
    clock.t += 2
    store.issue(timedelta(seconds=1), purpose=P)
    assert len(store._live) == 1
