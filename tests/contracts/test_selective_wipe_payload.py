"""A selective wipe names only managed data, on both backends.

The payload (``mdm_core.device.selective_wipe``) comes from the device's reported managed
apps and certificates, the configuration policies in force for it, and the configurations the
MDM applied: a BYOD phone full of personal apps gets a wipe that names none of them, and
whatever the posture says (property test) the payload holds only items the MDM manages.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm_core.device.command_model import MANAGED_NAME_PATTERN, InvalidCommand, validate_payload
from mdm_core.device.commands import CommandService, NoSuchDevice
from mdm_core.device.selective_wipe import selective_wipe_payload
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.loader import load_policy_directory
from mdm_core.posture.model import (
    InstalledApp,
    ManagedApp,
    ManagedCertificate,
    Platform,
    Posture,
)
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from tests.contracts.device_rows import add_device

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

CONFIG = """
kind: ConfigurationPolicy
id: everyone
assign: {}
apps: {install: [com.example.agent]}
certificates: {install: [wifi]}
---
kind: ConfigurationPolicy
id: finance
assign: {groups: [finance]}
apps: {install: [com.example.payroll]}
certificates: {install: [finance-vpn]}
---
kind: ConfigurationPolicy
id: ios-only
assign: {platforms: [ios]}
apps: {install: [com.example.ios-mail]}
"""

PERSONAL = ("com.whatsapp", "com.family.photos", "org.bank.personal")


def _policies(tmp: Path) -> CompiledPolicySet:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "configuration.yaml").write_text(CONFIG.lstrip("\n"), encoding="utf-8")
    return load_policy_directory(tmp, now=T0)


def _report(
    storage: SqlStorage,
    device_id: str,
    *,
    managed: tuple[str, ...] = (),
    installed: tuple[str, ...] = (),
    certificates: tuple[str, ...] = (),
) -> None:
    posture = Posture(
        platform=Platform.LINUX,
        collected_at=T0,
        managed_apps=tuple(ManagedApp(app_id=a) for a in managed),
        installed_apps=tuple(InstalledApp(app_id=a) for a in installed),
        managed_certificates=tuple(ManagedCertificate(name=c) for c in certificates),
    )
    with storage.unit_of_work() as uow:
        uow.posture.record(device_id, posture, received_at=T0, history_length=5)


def _payload(
    storage: SqlStorage, device_id: str, policies: CompiledPolicySet | None = None
) -> dict[str, object]:
    with storage.unit_of_work() as uow:
        return selective_wipe_payload(uow, device_id, reason="offboarded", policies=policies)


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    add_device(database, "phone", ownership="byod")
    add_device(database, "laptop", ownership="corporate")
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(DirectoryUser("u-phone", "fin", True, "local", T0))
        uow.directory_groups.upsert(DirectoryGroup("g-fin", "finance", "local", T0))
        uow.memberships.add(Membership("g-fin", "u-phone", MemberKind.USER))
    return storage


def test_a_byod_selective_wipe_names_only_managed_data(storage: SqlStorage, tmp_path: Path) -> None:
    _report(
        storage,
        "phone",
        managed=("com.example.mail", "com.example.payroll"),
        installed=(*PERSONAL, "com.example.mail"),
        certificates=("corp-root",),
    )
    commands = CommandService(storage)
    applied = commands.enqueue(
        "phone", "apply_configuration", {"configuration_id": "corp-wifi"}, created_by="t", now=T0
    )
    withdrawn = commands.enqueue(
        "phone", "apply_configuration", {"configuration_id": "never-sent"}, created_by="t", now=T0
    )
    commands.cancel(withdrawn.id, by="admin:x", now=T0)  # cancelled before delivery: not on it
    assert applied.id
    payload = _payload(storage, "phone", _policies(tmp_path))
    assert payload == {
        "reason": "offboarded",
        "work_container": True,
        "apps": ["com.example.agent", "com.example.mail", "com.example.payroll"],
        "certificates": ["corp-root", "finance-vpn", "wifi"],
        "configurations": ["corp-wifi"],
    }
    named = {*payload["apps"], *payload["certificates"], *payload["configurations"]}  # type: ignore[misc]
    assert not named & set(PERSONAL)
    # the command service takes it as is (a selective wipe is fine on BYOD)
    queued = commands.enqueue("phone", "selective_wipe", payload, created_by="offboarding:j")
    assert queued.payload == payload


def test_without_policies_or_posture_only_the_work_container(
    storage: SqlStorage, tmp_path: Path
) -> None:
    assert _payload(storage, "laptop") == {
        "reason": "offboarded",
        "work_container": True,
        "apps": [],
        "certificates": [],
        "configurations": [],
    }
    # the laptop's user is in no group: only the policies for everyone apply
    assert _payload(storage, "laptop", _policies(tmp_path))["apps"] == ["com.example.agent"]
    with pytest.raises(NoSuchDevice):
        _payload(storage, "no-such-device")


def test_a_name_that_is_not_a_managed_name_is_never_passed_on(storage: SqlStorage) -> None:
    _report(storage, "phone", managed=("com.example.ok", "../../home/alice", "a b", "/etc"))
    assert _payload(storage, "phone")["apps"] == ["com.example.ok"]


@pytest.mark.parametrize(
    "payload",
    [
        {"paths": ["/home/alice"]},
        {"apps": ["/home/alice/Documents"]},
        {"apps": ["..\\\\windows"]},
        {"apps": ["com.a", "com.a"]},
        {"apps": "com.a"},
        {"work_container": "yes"},
        {"certificates": [""]},
        {"configurations": ["x" * 300]},
        {"apps": [f"a{i}" for i in range(2001)]},
        {"everything": True},
    ],
)
def test_the_payload_model_refuses_anything_but_managed_names(
    storage: SqlStorage, database: Database, payload: dict[str, object]
) -> None:
    with pytest.raises(InvalidCommand):
        validate_payload("selective_wipe", payload)
    with pytest.raises(InvalidCommand):
        CommandService(storage).enqueue("phone", "selective_wipe", payload, created_by="t")
    assert CommandService(storage).for_device("phone") == []


# --- property: whatever the posture says ---------------------------------------------------

_ANY_NAME = st.one_of(
    st.sampled_from(["com.example.mail", "com.example.agent", "wifi", "corp-root", *PERSONAL]),
    st.text(min_size=1, max_size=40),
    st.from_regex(r"\A[a-z]{1,8}(\.[a-z]{1,8}){0,3}\Z"),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    managed=st.lists(_ANY_NAME, max_size=12, unique=True),
    installed=st.lists(_ANY_NAME, max_size=12, unique=True),
    certificates=st.lists(_ANY_NAME, max_size=6, unique=True),
    configurations=st.lists(st.from_regex(r"\A[a-z]{1,10}\Z"), max_size=4, unique=True),
    in_finance=st.booleans(),
)
def test_the_payload_holds_only_what_the_mdm_manages(
    sqlite_database: Database,
    tmp_path_factory: pytest.TempPathFactory,
    managed: list[str],
    installed: list[str],
    certificates: list[str],
    configurations: list[str],
    in_finance: bool,
) -> None:
    storage = SqlStorage(sqlite_database)
    device = f"d-{uuid.uuid4().hex[:12]}"
    add_device(sqlite_database, device, ownership="byod")
    if in_finance:
        with storage.unit_of_work() as uow:
            if uow.directory_groups.get("g-fin") is None:
                uow.directory_groups.upsert(DirectoryGroup("g-fin", "finance", "local", T0))
            uow.memberships.add(Membership("g-fin", "u-" + device, MemberKind.USER))
    _report(
        storage,
        device,
        managed=tuple(managed),
        installed=tuple(installed),
        certificates=tuple(certificates),
    )
    for name in configurations:
        CommandService(storage).enqueue(
            device, "apply_configuration", {"configuration_id": name}, created_by="t", now=T0
        )
    policies = _policies(tmp_path_factory.mktemp("p"))
    payload = _payload(storage, device, policies)

    valid = re.compile(MANAGED_NAME_PATTERN)
    policy_apps = {"com.example.agent"} | ({"com.example.payroll"} if in_finance else set())
    policy_certs = {"wifi"} | ({"finance-vpn"} if in_finance else set())
    assert set(payload) == {"reason", "work_container", "apps", "certificates", "configurations"}
    assert payload["work_container"] is True
    apps, certs, confs = (set(payload[k]) for k in ("apps", "certificates", "configurations"))  # type: ignore[call-overload]
    assert apps == {a for a in managed if valid.fullmatch(a)} | policy_apps
    assert certs == {c for c in certificates if valid.fullmatch(c)} | policy_certs
    assert confs == set(configurations)
    personal_only = set(installed) - set(managed) - policy_apps
    assert not apps & personal_only  # an app the device merely has is never named
    assert validate_payload("selective_wipe", payload) == payload
