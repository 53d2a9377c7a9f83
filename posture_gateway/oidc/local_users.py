"""Local password users: the users file, constant-time verification, failed-login limits.

File format (``settings.oidc.users_file``)::

    users:
      - username: alice
        user_id: u-alice            # the directory mirror id; becomes the ID token's sub
        password_hash: "scrypt$..."  # `posture users hash-password`
        email: alice@example.com
        name: Alice Example
        groups: [engineering]        # directory groups (the file is a directory source)

Unknown users and wrong passwords take the same time and give the same answer. Failed
attempts are limited per (username, client IP) through the :class:`FailureLimiter` protocol;
:class:`InProcessFailureLimiter` is the embedded implementation (a Redis one can back it for
several processes).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from posture_gateway.oidc.authn import AuthenticatedUser, AuthenticationFailed
from posture_gateway.oidc.passwords import dummy_hash, verify_password
from posture_gateway.oidc.yamlconf import ConfigFileError, load_entries

__all__ = [
    "UserConfig",
    "FailureLimiter",
    "InProcessFailureLimiter",
    "LocalUsers",
    "load_local_users",
]


class UserConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    password_hash: str
    email: str | None = None
    name: str | None = None
    # Directory groups the user is in: the users file is also a directory source
    # (posture_gateway/local_directory.py puts its users into the mirror at start-up).
    groups: tuple[str, ...] = ()

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not value.startswith("scrypt$") or value.count("$") != 3:
            raise ValueError("must be a 'scrypt$...' hash from `posture users hash-password`")
        return value


class FailureLimiter(Protocol):
    """Counts failed attempts per key within a sliding window."""

    def blocked(self, key: str) -> bool:
        """True when ``key`` has used up its failed attempts in the window (unknown: False).
        Raises on a backend failure (callers refuse the attempt)."""
        ...

    def record_failure(self, key: str) -> None:
        """Count one failed attempt for ``key`` now."""
        ...

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures (after a success). Unknown key: no-op."""
        ...


class InProcessFailureLimiter:
    """Sliding window of failure timestamps per key, in this process."""

    def __init__(
        self,
        *,
        max_failures: int,
        window: timedelta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be >= 1")
        self._max = max_failures
        self._window = window.total_seconds()
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        return failures

    def blocked(self, key: str) -> bool:
        with self._lock:
            recent = self._recent(key, self._clock())
            if not recent:
                self._failures.pop(key, None)
            return len(recent) >= self._max

    def record_failure(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(key, now).append(now)

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class LocalUsers:
    """The users file, loaded once; :meth:`verify` checks a password."""

    def __init__(self, users: list[UserConfig], limiter: FailureLimiter) -> None:
        if limiter is None:
            raise ValueError("LocalUsers needs a failure limiter")
        self._by_name = {u.username: u for u in users}
        self._limiter = limiter

    def __len__(self) -> int:
        return len(self._by_name)

    def verify(self, username: str, password: str, *, client_ip: str) -> AuthenticatedUser:
        """The user for these credentials, or :class:`AuthenticationFailed`.

        ``rate_limited`` when this (username, IP) failed too often recently (checked before
        the password, so guessing stops); ``invalid_credentials`` for an unknown user or a
        wrong password, after the same scrypt work; ``unavailable`` if the limiter fails.
        """
        key = f"{username.casefold()}|{client_ip}"
        try:
            if self._limiter.blocked(key):
                raise AuthenticationFailed("rate_limited")
        except AuthenticationFailed:
            raise
        except Exception as exc:  # a limiter backend error refuses the attempt
            raise AuthenticationFailed("unavailable") from exc
        user = self._by_name.get(username)
        ok = verify_password(password, user.password_hash if user else dummy_hash())
        if user is None or not ok:
            try:
                self._limiter.record_failure(key)
            except Exception as exc:
                raise AuthenticationFailed("unavailable") from exc
            raise AuthenticationFailed("invalid_credentials")
        self._limiter.reset(key)
        return AuthenticatedUser(
            user_id=user.user_id,
            username=user.username,
            email=user.email,
            name=user.name,
            amr=("pwd",),
            source="local",
        )


def load_local_users(path: Path | None, limiter: FailureLimiter) -> LocalUsers | None:
    """Load and validate the users file (None: local password login is off)."""
    if path is None:
        return None
    entries = load_entries(path, "users", UserConfig)
    problems: list[str] = []
    names: dict[str, int] = {}
    ids: dict[str, int] = {}
    for entry in entries:
        user: UserConfig = entry.value
        for seen, value, what in (
            (names, user.username, "username"),
            (ids, user.user_id, "user_id"),
        ):
            if value in seen:
                problems.append(
                    f"{path}:{entry.line}: duplicate {what} {value!r} (first on line {seen[value]})"
                )
            seen.setdefault(value, entry.line)
    if problems:
        raise ConfigFileError(problems)
    return LocalUsers([e.value for e in entries], limiter)
