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
attempts are limited by :class:`FailureLimiter` on the core's shared rate limiter (one count
for every worker process): per source (spraying) and per account, where a targeted account is
slowed, never locked (docs/decisions.md, "Failed logins slow an account, never lock it").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mdm_core.domain.infra_errors import InfraError
from mdm_core.ratelimit.guard import RateGuard
from posture_gateway.oidc.authn import AuthenticatedUser, AuthenticationFailed
from posture_gateway.oidc.passwords import dummy_hash, verify_password
from posture_gateway.oidc.yamlconf import ConfigFileError, load_entries

__all__ = [
    "UserConfig",
    "FailureLimiter",
    "LoginLimits",
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
    # (posture_gateway/directory/local_users.py puts its users into the mirror at start-up).
    groups: tuple[str, ...] = ()

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not value.startswith("scrypt$") or value.count("$") != 3:
            raise ValueError("must be a 'scrypt$...' hash from `posture users hash-password`")
        return value


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """The failed-password rules (see :class:`FailureLimiter` and docs/decisions.md)."""

    #: Failed passwords one source (client address) may make, over all usernames, per window.
    per_source: int = 20
    #: Failures on one account, from all sources, before the account is slowed.
    per_account: int = 5
    window: timedelta = timedelta(minutes=15)
    #: A slowed account takes one attempt per source per this interval (first tier).
    interval: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if self.per_source < 1 or self.per_account < 1:
            raise ValueError("login limits must be >= 1")
        if self.window <= timedelta(0) or self.interval <= timedelta(0):
            raise ValueError("login limit windows must be positive")

    def tiers(self) -> tuple[tuple[int, int, timedelta], ...]:
        """``(tier, failures on the account, pacing interval)``, mildest first: the more an
        account is attacked the slower each source may try it, up to a cap of ten intervals."""
        return (
            (1, self.per_account, self.interval),
            (2, 4 * self.per_account, 4 * self.interval),
            (3, 16 * self.per_account, 10 * self.interval),
        )


class FailureLimiter:
    """Failed-password limits on the core's shared :class:`~mdm_core.ratelimit.limiter.RateLimiter`.

    One count for every process (Redis or the SQL table), and no lockout anyone else can
    cause:

    - **per source** (password spraying, brute force from one address): a source with
      ``per_source`` failures in the window is refused, whatever username it tries;
    - **per account** (a targeted user): an account with ``per_account`` failures from all
      sources is *slowed*, not locked: a source that fails on a slowed account must wait one to
      two pacing intervals before it tries that account again (the interval grows with the
      account's failures, capped at ten times the first). A source that has not been failing
      on the account is not slowed at all, so the right password from the victim's own device
      gets in at once, as often as she needs, while a stranger hammers the account.

    Both limits count failures, so they are read with
    :meth:`~mdm_core.ratelimit.limiter.RateLimiter.allows` before the attempt and counted with
    ``hit`` after a failure: concurrent attempts may overshoot by the number in flight at once
    (bounded by the server's threads). Any limiter error is a refusal (``unavailable``),
    never an attempt let through.
    """

    def __init__(self, guard: RateGuard, limits: LoginLimits) -> None:
        if guard is None or limits is None:
            raise ValueError("FailureLimiter needs a rate guard and limits")
        self._guard = guard
        self._limiter = guard.limiter
        self.limits = limits

    @staticmethod
    def _account(username: str) -> str:
        return username.casefold()

    def _slowed(self, account: str) -> tuple[int, timedelta] | None:
        """The strongest tier the account has reached, or ``None`` (not slowed)."""
        reached = None
        for tier, failures, interval in self.limits.tiers():
            if not self._limiter.allows(
                f"login:acct{tier}:{account}", failures, self.limits.window
            ):
                reached = (tier, interval)
        return reached

    def check(self, username: str, source: str) -> None:
        """Refuse (``rate_limited``, with ``retry_after``) an attempt the rules do not allow
        now; ``unavailable`` when the limiter fails. Call before verifying the password."""
        account = self._account(username)
        limits = self.limits
        try:
            key = f"login:src:{source}"
            if not self._limiter.allows(key, limits.per_source, limits.window):
                raise self._refused("login_source", key, limits.per_source, limits.window, source)
            if self._slowed(account) is not None:
                for tier, _, interval in limits.tiers():
                    pace = f"login:pace{tier}:{account}|{source}"
                    if not self._limiter.allows(pace, 1, interval):  # it failed here lately
                        raise self._refused("login_account", pace, 1, interval, f"user:{account}")
        except InfraError as exc:
            raise AuthenticationFailed("unavailable") from self._guard.unavailable("login", exc)

    def record_failure(self, username: str, source: str) -> None:
        """Count a failed password of ``username`` from ``source``."""
        account = self._account(username)
        limits = self.limits
        try:
            self._limiter.hit(f"login:src:{source}", limits.per_source, limits.window)
            for tier, failures, _ in limits.tiers():
                self._limiter.hit(f"login:acct{tier}:{account}", failures, limits.window)
            slowed = self._slowed(account)
            if slowed is not None:  # this source waits before its next try on this account
                tier, interval = slowed
                self._limiter.hit(f"login:pace{tier}:{account}|{source}", 1, interval)
        except InfraError as exc:
            raise AuthenticationFailed("unavailable") from self._guard.unavailable("login", exc)

    def _refused(
        self, name: str, key: str, limit: int, window: timedelta, subject: str
    ) -> AuthenticationFailed:
        limited = self._guard.refused(name, key, limit, window, actor="login", subject=subject)
        return AuthenticationFailed("rate_limited", retry_after=limited.retry_after)


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

        ``rate_limited`` (with ``retry_after``) when the source failed too often or the
        account is slowed and this source must wait (checked before the password, so guessing
        stops); ``invalid_credentials`` for an unknown user or a wrong password, after the same
        scrypt work; ``unavailable`` if the limiter fails (fail closed).
        """
        try:
            self._limiter.check(username, client_ip)
        except AuthenticationFailed:
            raise
        except Exception as exc:  # any limiter error refuses the attempt
            raise AuthenticationFailed("unavailable") from exc
        user = self._by_name.get(username)
        ok = verify_password(password, user.password_hash if user else dummy_hash())
        if user is None or not ok:
            try:
                self._limiter.record_failure(username, client_ip)
            except AuthenticationFailed:
                raise
            except Exception as exc:
                raise AuthenticationFailed("unavailable") from exc
            raise AuthenticationFailed("invalid_credentials")
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
