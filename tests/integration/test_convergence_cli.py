"""The CLI side of item 3/4: ``directory.source_of_truth`` from the config file reaches
``posture directory import`` (which prints what it overrode and what was ignored), the import
converges the devices of users whose groups changed, and ``posture policy converge`` plans
(``--dry-run``), queues once, and refuses an unknown device."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mdm_core.directory.sync import SourceUser, sync_source
from mdm_core.posture.model import Platform
from mdm_core.runtime import MdmCore
from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.settings import load_settings
from tests.helpers.enrolled import ROOT, enroll_device


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posture.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'var'}\n"
        "dev_mode: true\n"
        f"policy_dir: {ROOT / 'policies'}\n"
        "directory:\n"
        "  source_of_truth:\n"
        "    groups: [ldap, import]\n"
        "    email: [import, ldap]\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def core(config: Path) -> Iterator[MdmCore]:
    app = create_app(load_settings(config, environ={}))
    built = app.extensions["posture"].core
    try:
        yield built
    finally:
        built.close()


def _run(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], env={})


def test_import_reports_overrides_and_converges_changed_users(
    config: Path, core: MdmCore, tmp_path: Path
) -> None:
    sync_source(
        core.storage,
        "ldap",
        [SourceUser(id="u-al", username="al", email="al@ldap", groups=("marketing",))],
        source_of_truth=core.directory.source_of_truth,
    )
    core.relay.drain()
    assert core.convergence.wait_idle()
    dev = enroll_device(core, "u-bo", platform=Platform.LINUX)
    people = tmp_path / "people.yaml"
    people.write_text(
        "users:\n"
        "  - {username: al, id: u-al, email: al@import, groups: [finance]}\n"
        "  - {username: bo, id: u-bo, groups: [finance]}\n",
        encoding="utf-8",
    )
    imported = _run(config, "directory", "import", str(people))
    assert imported.exit_code == 0, imported.output
    out = " ".join(imported.output.split())
    assert "u-al.groups: ldap [marketing] over import [finance]" in out  # ignored
    assert "u-al.email: import 'al@import' over ldap 'al@ldap'" in out  # overrode
    assert re.search(r"groups changed for: u-bo\b", out), out
    with core.storage.unit_of_work() as uow:
        al = uow.directory_users.get("u-al")
    assert al is not None and al.email == "al@import"
    # bo's device converged during the import (Finance's configuration), with no server
    types = sorted(c.type.value for c in core.commands.for_device(dev.device_id))
    assert types.count("install_app") == 3 and types.count("install_certificate") == 2

    again = _run(config, "directory", "import", str(people))
    assert again.exit_code == 0 and "groups changed for" not in again.output
    assert len(core.commands.for_device(dev.device_id)) == 5


def test_policy_converge_dry_run_then_once(config: Path, core: MdmCore) -> None:
    sync_source(
        core.storage,
        "ldap",
        [SourceUser(id="u-cy", username="cy", groups=("marketing",))],
        source_of_truth=core.directory.source_of_truth,
    )
    core.relay.drain()
    assert core.convergence.wait_idle()
    dev = enroll_device(core, "u-cy", platform=Platform.LINUX)

    dry = _run(config, "policy", "converge", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.output[dry.output.index("{") :])
    (device,) = [d for d in report["devices"] if d["device_id"] == dev.device_id]
    assert device["groups"] == ["marketing"] and len(device["plan"]["actions"]) == 5
    assert core.commands.for_device(dev.device_id) == []

    queued = _run(config, "policy", "converge", "--user", "u-cy")
    assert queued.exit_code == 0 and "queued 5 command(s)" in queued.output, queued.output
    again = _run(config, "policy", "converge", "--device", dev.device_id)
    assert again.exit_code == 0 and "queued 0 command(s)" in again.output, again.output
    assert len(core.commands.for_device(dev.device_id)) == 5

    unknown = _run(config, "policy", "converge", "--device", "no-such-device")
    assert unknown.exit_code == 1 and "unknown device" in unknown.output
    both = _run(config, "policy", "converge", "--device", "x", "--user", "y")
    assert both.exit_code == 2


def test_a_bad_source_of_truth_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"data_dir: {tmp_path / 'var'}\ndev_mode: true\n"
        "directory:\n  source_of_truth:\n    groups: [ldap, ldap]\n",
        encoding="utf-8",
    )
    result = _run(bad, "policy", "converge")
    assert result.exit_code == 2
    assert "directory.source_of_truth.groups: 'ldap' is listed twice" in result.output
    assert not (tmp_path / "var").exists()  # nothing created
