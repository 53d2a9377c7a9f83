"""Clients and users files: validation with file:line errors; passwords; failed-login limits."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mdm_core.domain.infra_errors import InfraUnavailable
from mdm_core.ratelimit.guard import RateGuard
from mdm_core.ratelimit.sql import SqlRateLimiter
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.oidc.authn import AuthenticationFailed
from posture_gateway.oidc.clients import load_clients
from posture_gateway.oidc.local_users import FailureLimiter, LoginLimits, load_local_users
from posture_gateway.oidc.passwords import (
    hash_client_secret,
    hash_password,
    verify_client_secret,
    verify_password,
)
from posture_gateway.oidc.yamlconf import ConfigFileError

SECRET = "s" * 40
GOOD = f"""clients:
  - client_id: app
    client_secret_hash: "{hash_client_secret(SECRET)}"
    redirect_uris: [https://app.example/cb]
    scopes: [openid, email]
"""


def _write(tmp_path: Path, text: str, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_clients_file(tmp_path: Path) -> None:
    registry = load_clients(_write(tmp_path, GOOD))
    client = registry.get("app")
    assert client is not None and len(registry) == 1
    assert client.check_client_secret(SECRET) and not client.check_client_secret(SECRET + "x")
    assert client.check_redirect_uri("https://app.example/cb")
    assert not client.check_redirect_uri("https://app.example/cb/")
    assert client.get_allowed_scope("openid email") == "openid email"
    # not allowed for this client / not understood at all: left out, not refused (finding 9)
    assert client.get_allowed_scope("openid profile") == "openid"
    assert client.get_allowed_scope("openid admin email openid") == "openid email"
    assert client.get_allowed_scope("email") is None  # openid is required
    assert registry.get("nope") is None and registry.get(None) is None
    assert len(load_clients(None)) == 0


@pytest.mark.parametrize(
    ("entry", "line", "fragment"),
    [
        ("    redirect_uris: [http://app.example/cb]\n", 7, "must be https"),
        ("    redirect_uris: [https://app.example/cb#x]\n", 7, "fragment"),
        ("    redirect_uris: [/cb]\n", 7, "absolute"),
        ("    redirect_uris: []\n", 7, "redirect_uris"),
        ("    redirect_uris: [https://a/cb, https://a/cb]\n", 7, "duplicate URI"),
        ("    redirect_uris: [https://a/cb]\n    scopes: [email]\n", 8, "openid"),
        ("    redirect_uris: [https://a/cb]\n    scopes: [openid, admin]\n", 8, "unsupported"),
        ("    redirect_uris: [https://a/cb]\n    colour: blue\n", 8, "Extra inputs"),
        (
            "    redirect_uris: [https://a/cb]\n    id_token_signed_response_alg: HS256\n",
            8,
            "RS256",
        ),
        (
            "    redirect_uris: [https://a/cb]\n    grant_types: [refresh_token]\n",
            5,
            "authorization_code",
        ),
        ("    scopes: [openid]\n", 5, "redirect_uris"),
    ],
)
def test_client_errors_name_file_and_line(
    tmp_path: Path, entry: str, line: int, fragment: str
) -> None:
    text = (
        "clients:\n"
        "  - client_id: ok\n"
        "    token_endpoint_auth_method: none\n"
        "    redirect_uris: [https://ok/cb]\n"
        "  - client_id: bad\n"
        "    token_endpoint_auth_method: none\n"
    )
    path = _write(tmp_path, text + entry)
    with pytest.raises(ConfigFileError) as err:
        load_clients(path)
    (problem,) = err.value.problems
    assert problem.startswith(f"{path}:{line}: clients[1]"), problem
    assert fragment in problem


def test_client_secret_rules(tmp_path: Path) -> None:
    public_with_secret = GOOD.replace(
        "    client_secret_hash", "    token_endpoint_auth_method: none\n    client_secret_hash"
    )
    with pytest.raises(ConfigFileError, match="public client"):
        load_clients(_write(tmp_path, public_with_secret))
    plain = GOOD.replace(hash_client_secret(SECRET), "hunter2")
    with pytest.raises(ConfigFileError, match="never a plain secret"):
        load_clients(_write(tmp_path, plain))
    no_secret = "\n".join(line for line in GOOD.splitlines() if "secret" not in line)
    with pytest.raises(ConfigFileError, match="client_secret_hash is required"):
        load_clients(_write(tmp_path, no_secret))


def test_duplicate_client_and_yaml_errors(tmp_path: Path) -> None:
    dup = GOOD + GOOD.split("clients:\n")[1]
    path = _write(tmp_path, dup)
    with pytest.raises(
        ConfigFileError, match=rf"{path}:6: duplicate client_id 'app' \(first on line 2\)"
    ):
        load_clients(path)
    with pytest.raises(ConfigFileError, match=":3: not valid YAML"):
        load_clients(_write(tmp_path, "clients:\n  - [unclosed\n"))
    with pytest.raises(ConfigFileError, match="expected a 'clients' list"):
        load_clients(_write(tmp_path, "clients: 3\n"))
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_clients(tmp_path / "missing.yaml")


def test_exact_line_of_a_bad_field(tmp_path: Path) -> None:
    text = GOOD.replace("[https://app.example/cb]", "[ftp://app.example/cb]")
    path = _write(tmp_path, text)
    with pytest.raises(ConfigFileError) as err:
        load_clients(path)
    assert str(err.value).startswith(f"{path}:4: clients[0].redirect_uris:")


def _users(tmp_path: Path, extra: str = "") -> Path:
    return _write(
        tmp_path,
        "users:\n"
        "  - username: alice\n"
        "    user_id: u-alice\n"
        f'    password_hash: "{hash_password("pw-alice-123", n=2**10)}"\n' + extra,
        "users.yaml",
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(sqlite_database: Database, clock: Clock) -> FailureLimiter:
    guard = RateGuard(SqlRateLimiter(sqlite_database, clock=clock), SqlStorage(sqlite_database))
    return FailureLimiter(guard, LoginLimits(per_source=4, per_account=2))


def test_local_users_verify(tmp_path: Path, limiter: FailureLimiter) -> None:
    users = load_local_users(_users(tmp_path), limiter)
    assert users is not None and len(users) == 1
    user = users.verify("alice", "pw-alice-123", client_ip="1.1.1.1")
    assert user.user_id == "u-alice" and user.amr == ("pwd",)
    for username, password in (("alice", "wrong"), ("bob", "pw-alice-123")):
        with pytest.raises(AuthenticationFailed) as err:
            users.verify(username, password, client_ip="1.1.1.1")
        assert err.value.reason == "invalid_credentials"
    assert load_local_users(None, limiter) is None


def test_a_slowed_account_makes_the_failing_source_wait(
    tmp_path: Path, limiter: FailureLimiter, clock: Clock
) -> None:
    users = load_local_users(_users(tmp_path), limiter)
    assert users is not None
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            users.verify("alice", "wrong", client_ip="1.1.1.1")
    with pytest.raises(AuthenticationFailed) as err:
        users.verify("alice", "pw-alice-123", client_ip="1.1.1.1")
    assert err.value.reason == "rate_limited" and err.value.retry_after == 30
    # Another source is not affected, and the failing one only waits, capped.
    assert users.verify("alice", "pw-alice-123", client_ip="2.2.2.2").user_id == "u-alice"
    clock.now += 61  # two pacing intervals
    assert users.verify("alice", "pw-alice-123", client_ip="1.1.1.1").user_id == "u-alice"


def test_a_stranger_cannot_lock_alice_out(
    tmp_path: Path, limiter: FailureLimiter, clock: Clock
) -> None:
    users = load_local_users(_users(tmp_path), limiter)
    assert users is not None
    refused = 0
    for i in range(100):  # a stranger's 100 wrong passwords for alice, spread over sources
        with pytest.raises(AuthenticationFailed) as err:
            users.verify("alice", f"guess-{i}", client_ip=f"203.0.113.{i % 50}")
        refused += err.value.reason == "rate_limited"
        clock.now += 1
    assert refused > 0  # the attack was slowed
    assert users.verify("alice", "pw-alice-123", client_ip="198.51.100.9").user_id == "u-alice"


def test_a_spraying_source_is_refused(tmp_path: Path, limiter: FailureLimiter) -> None:
    users = load_local_users(_users(tmp_path), limiter)
    assert users is not None
    for name in ("bob", "carol", "dave", "erin"):  # one guess each: no account is slowed
        with pytest.raises(AuthenticationFailed) as err:
            users.verify(name, "Winter2026!", client_ip="6.6.6.6")
        assert err.value.reason == "invalid_credentials"
    with pytest.raises(AuthenticationFailed) as err:
        users.verify("alice", "pw-alice-123", client_ip="6.6.6.6")
    assert err.value.reason == "rate_limited"  # the source, whatever it tries now
    assert users.verify("alice", "pw-alice-123", client_ip="7.7.7.7").user_id == "u-alice"


def test_broken_limiter_refuses(tmp_path: Path, sqlite_database: Database) -> None:
    class Broken:
        def hit(self, key: str, limit: int, window: timedelta) -> bool:
            raise InfraUnavailable("redis", "EVALSHA", "ConnectionError")

        def allows(self, key: str, limit: int, window: timedelta) -> bool:
            raise InfraUnavailable("redis", "EVALSHA", "ConnectionError")

    guard = RateGuard(Broken(), SqlStorage(sqlite_database))
    users = load_local_users(_users(tmp_path), FailureLimiter(guard, LoginLimits()))
    assert users is not None
    with pytest.raises(AuthenticationFailed) as err:
        users.verify("alice", "pw-alice-123", client_ip="1.1.1.1")
    assert err.value.reason == "unavailable"


def test_login_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        LoginLimits(per_source=0)
    with pytest.raises(ValueError):
        LoginLimits(interval=timedelta(0))


def test_users_file_errors(tmp_path: Path, limiter: FailureLimiter) -> None:
    dup = _users(
        tmp_path,
        "  - username: alice\n    user_id: u-2\n"
        f'    password_hash: "{hash_password("x", n=2**10)}"\n',
    )
    with pytest.raises(ConfigFileError, match=r":5: duplicate username 'alice'"):
        load_local_users(dup, limiter)
    plain = _write(
        tmp_path, "users:\n  - username: a\n    user_id: u\n    password_hash: secret\n", "p.yaml"
    )
    with pytest.raises(ConfigFileError, match=r"p.yaml:4: users\[0\].password_hash"):
        load_local_users(plain, limiter)


def test_password_hashes() -> None:
    encoded = hash_password("pw", n=2**10)
    assert verify_password("pw", encoded) and not verify_password("pW", encoded)
    for broken in ("", "scrypt$", "bcrypt$x$y$z", "scrypt$n=x$a$b", encoded[:-4] + "!!!!"):
        assert verify_password("pw", broken) is False
    with pytest.raises(ValueError):
        hash_password("")
    with pytest.raises(ValueError):
        hash_client_secret("short")
    assert verify_client_secret(SECRET, hash_client_secret(SECRET))
    assert verify_client_secret("pw", encoded)
    assert not verify_client_secret("pw", "plain$pw")
