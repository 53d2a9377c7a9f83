"""``posture sync ldap`` end to end, the ``ldap`` settings section, and the scheduled sync's
lease (one process of several syncs)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from idp_connectors.ldap import LdapSettings
from idp_connectors.ldap.scheduler import LdapScheduler, lease_name
from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.directory.ldap_schedule import init_ldap_schedule
from posture_gateway.settings import ConfigError, Settings, load_settings
from tests.helpers.ldap_data import DirectoryData, Writer
from tests.slapd import ADMIN_PASSWORD, PrivateSlapd


def _config(tmp_path: Path, slapd: PrivateSlapd, data: DirectoryData, **extra: object) -> Path:
    section = {
        "url": slapd.url,
        "schema": data.flavor,
        "base_dn": data.base,
        "bind_dn": f"cn=admin,{data.suffix}",
        "ca_file": str(slapd.ca_file),
        **extra,
    }
    path = tmp_path / "posture.yaml"
    path.write_text(yaml.safe_dump({"dev_mode": True, "data_dir": str(tmp_path), "ldap": section}))
    return path


def test_posture_sync_ldap_shows_progress_and_a_summary(
    tmp_path: Path, slapd: PrivateSlapd, small: DirectoryData, writer: Writer
) -> None:
    config = _config(tmp_path, slapd, small)
    env = {"POSTURE_LDAP__BIND_PASSWORD": ADMIN_PASSWORD}
    runner = CliRunner()
    first = runner.invoke(cli, ["--config", str(config), "sync", "ldap"], env=env)
    assert first.exit_code == 0, first.output
    assert "LDAP full sync" in first.output and "reading users" in first.output
    assert f"│ added    │    {len(small.people)} │" in first.output
    assert ADMIN_PASSWORD not in first.output
    writer.set_disabled(next(p for p in small.people if not p.disabled), True)
    second = runner.invoke(cli, ["--config", str(config), "sync", "ldap"], env=env)
    assert second.exit_code == 0, second.output
    assert "LDAP incremental sync" in second.output
    assert "│ disabled │     1 │" in second.output
    full = runner.invoke(cli, ["--config", str(config), "sync", "ldap", "--full"], env=env)
    assert "LDAP full sync" in full.output and "│ deleted  │     0 │" in full.output
    lookup = runner.invoke(
        cli, ["--config", str(config), "sync", "ldap", "--user", "*)(uid=*"], env=env
    )
    assert lookup.exit_code == 1 and "no LDAP user" in lookup.output
    app = create_app(load_settings(config, env))
    try:
        with app.extensions["posture"].core.storage.unit_of_work() as uow:
            audited = [e for e in uow.audit.recent("ldap", 50) if e.action == "directory.ldap_sync"]
    finally:
        app.extensions["posture"].core.close()
    assert len(audited) == 3 and all(e.actor.startswith("admin:") for e in audited)


def test_sync_ldap_without_a_section_or_with_a_bad_password_fails_in_one_line(
    tmp_path: Path, slapd: PrivateSlapd, small: DirectoryData
) -> None:
    runner = CliRunner()
    bare = runner.invoke(
        cli, ["sync", "ldap"], env={"POSTURE_DATA_DIR": str(tmp_path), "POSTURE_DEV_MODE": "1"}
    )
    assert bare.exit_code == 2 and "no `ldap` section" in bare.output
    config = _config(tmp_path, slapd, small)
    bad = runner.invoke(
        cli,
        ["--config", str(config), "sync", "ldap"],
        env={"POSTURE_LDAP__BIND_PASSWORD": "not-the-password"},
    )
    assert bad.exit_code == 1 and "ldap.bind" in bad.output
    assert "not-the-password" not in bad.output


def test_ldap_settings_validate_and_never_show_the_password(tmp_path: Path) -> None:
    base = {"url": "ldaps://dc.example:636", "schema": "ad", "base_dn": "dc=example"}
    ok = LdapSettings.model_validate({**base, "bind_dn": "cn=svc", "bind_password": "s3cret-pw"})
    assert "s3cret-pw" not in repr(ok) and ok.password() == "s3cret-pw"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    from_file = LdapSettings.model_validate(
        {**base, "bind_dn": "cn=svc", "bind_password_file": str(secret)}
    )
    assert from_file.password() == "from-file"
    for bad, message in (
        ({"bind_dn": "cn=svc"}, "needs bind_password"),
        ({}, "bind_dn is required"),
        (
            {"bind_dn": "cn=svc", "bind_password": "x", "bind_password_file": str(secret)},
            "not both",
        ),
        ({"url": "http://dc.example"}, "ldap://"),
        (
            {"url": "ldap://dc.example", "allow_plaintext": True, "allow_anonymous": True},
            "loopback",
        ),
        ({"user_filter": "(uid=*))(|(x=*)", "allow_anonymous": True}, "parenthesised"),
        ({"attributes": {"username": "uid)(x"}, "allow_anonymous": True}, "attribute name"),
        ({"disabled_attribute": "a b", "allow_anonymous": True}, "attribute name"),
    ):
        with pytest.raises(ValueError, match=message):
            LdapSettings.model_validate({**base, **bad})
    with pytest.raises(ConfigError, match="ldap"):
        load_settings(None, {"POSTURE_LDAP__URL": "ftp://x"})
    env = {
        "POSTURE_LDAP__URL": "ldaps://dc.example",
        "POSTURE_LDAP__SCHEMA": "openldap",
        "POSTURE_LDAP__BASE_DN": "dc=example",
        "POSTURE_LDAP__BIND_DN": "cn=svc",
        "POSTURE_LDAP__BIND_PASSWORD": "env-secret",
    }
    settings = load_settings(None, env)
    assert settings.ldap is not None and settings.ldap.password() == "env-secret"
    assert "env-secret" not in repr(settings)


def test_only_the_lease_holder_syncs_and_a_dead_holder_is_replaced(
    slapd: PrivateSlapd, small: DirectoryData, storage: SqlStorage
) -> None:
    from tests.integration.ldap.conftest import settings_for

    now = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]
    settings = settings_for(slapd, small, schedule={"enabled": True, "incremental_every": "1m"})
    one = LdapScheduler(settings, storage, holder="worker-1", clock=lambda: now[0])
    two = LdapScheduler(settings, storage, holder="worker-2", clock=lambda: now[0])
    first = one.run_once()
    assert first is not None and first.mode == "full"
    assert two.run_once() is None  # worker-1 holds the lease: worker-2 does nothing
    now[0] += timedelta(minutes=1)
    again = one.run_once()
    assert again is not None and again.mode == "incremental"  # full only once a day
    assert two.run_once() is None
    now[0] += one.lease_ttl + timedelta(seconds=1)  # worker-1 died and stopped renewing
    taken = two.run_once()
    assert taken is not None
    assert one.run_once() is None
    with storage.unit_of_work() as uow:
        assert uow.leases.holders()[lease_name("ldap")][0] == "worker-2"
    now[0] += timedelta(days=1, minutes=1)
    daily = two.run_once()
    assert daily is not None and daily.mode == "full"
    two.stop()
    with storage.unit_of_work() as uow:
        assert lease_name("ldap") not in uow.leases.holders()


def test_a_failing_scheduled_sync_is_logged_and_retried(
    slapd: PrivateSlapd, small: DirectoryData, storage: SqlStorage
) -> None:
    from tests.integration.ldap.conftest import settings_for

    settings = settings_for(slapd, small, bind_password="wrong", schedule={"enabled": True})
    scheduler = LdapScheduler(settings, storage, holder="w")
    assert scheduler.run_once() is None
    assert scheduler.last_error is not None and scheduler.last_error.startswith("ldap.bind")
    assert "'wrong'" not in scheduler.last_error


def test_the_server_starts_the_schedule_only_in_served_workers(
    tmp_path: Path, slapd: PrivateSlapd, small: DirectoryData
) -> None:
    from tests.integration.ldap.conftest import settings_for

    ldap = settings_for(slapd, small, schedule={"enabled": True, "incremental_every": "1h"})
    app = create_app(Settings(data_dir=tmp_path, dev_mode=True, ldap=ldap))
    try:
        assert "posture_ldap_schedule" not in app.extensions  # not a served worker
        scheduler = init_ldap_schedule(app, force=True)
        assert scheduler is not None and app.extensions["posture_ldap_schedule"] is scheduler
        deadline = time.monotonic() + 60
        while scheduler.last_result is None and time.monotonic() < deadline:
            time.sleep(0.1)
        scheduler.stop()
        assert scheduler.last_result is not None and scheduler.last_result.mode == "full"
        assert scheduler.last_error is None
    finally:
        app.extensions["posture"].core.close()
