"""The pure convergence planner (:mod:`mdm_core.device.convergence_plan`): exactly the missing
installs and surplus removals, pending commands counted, stale own commands cancelled, an
admin's conflicting command respected, deterministic keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mdm_core.device.commands import Command, CommandStatus, CommandType
from mdm_core.device.convergence_plan import (
    CONVERGENCE_ACTOR,
    Action,
    ItemKind,
    desired_version,
    idempotency_key,
    plan_device,
)
from mdm_core.policy.configuration import DesiredConfiguration

T0 = datetime(2026, 3, 1, tzinfo=UTC)
APP, CERT = ItemKind.APP, ItemKind.CERTIFICATE

FINANCE = DesiredConfiguration(
    install_apps=frozenset({"agent", "vpn", "payroll"}),
    remove_apps=frozenset(),
    install_certificates=frozenset({"wifi", "finance-vpn"}),
    remove_certificates=frozenset(),
    policy_ids=("everyone", "finance"),
)
MARKETING_ON_DEVICE = {
    (APP, "agent"),
    (APP, "campaigns"),
    (APP, "brand"),
    (CERT, "wifi"),
    (CERT, "marketing-share"),
}
MANAGED = MARKETING_ON_DEVICE | {
    (APP, "vpn"),
    (APP, "payroll"),
    (CERT, "finance-vpn"),
}


def _cmd(
    ctype: CommandType,
    payload: dict[str, str],
    status: CommandStatus = CommandStatus.QUEUED,
    *,
    by: str = CONVERGENCE_ACTOR,
    at: datetime = T0,
    acked: datetime | None = None,
    cid: str = "c1",
) -> Command:
    return Command(
        id=cid,
        device_id="d1",
        type=ctype,
        payload=payload,
        priority=10,
        status=status,
        attempts=0,
        error=None,
        created_by=by,
        idempotency_key=None,
        created_at=at,
        updated_at=at,
        delivered_at=None,
        acknowledged_at=acked,
    )


def _plan(reported=MARKETING_ON_DEVICE, history=(), reported_at=T0, managed=MANAGED):
    return plan_device(
        "d1",
        FINANCE,
        reported=reported,
        reported_at=reported_at,
        history=list(history),
        managed=managed,
        version="v1",
    )


def test_marketing_to_finance_is_exactly_remove_marketing_and_install_finance() -> None:
    plan = _plan()
    assert [str(a) for a in plan.actions] == [
        "remove_app brand",
        "remove_app campaigns",
        "remove_certificate marketing-share",
        "install_app payroll",
        "install_app vpn",
        "install_certificate finance-vpn",
    ]
    assert plan.cancel == () and plan.conflicts == ()


def test_a_converged_device_needs_nothing() -> None:
    on_device = {(APP, "agent"), (APP, "vpn"), (APP, "payroll"), (CERT, "wifi")}
    on_device |= {(CERT, "finance-vpn")}
    assert _plan(reported=on_device).empty


def test_pending_and_freshly_acknowledged_commands_count_as_done() -> None:
    history = [
        _cmd(CommandType.INSTALL_APP, {"app_id": "vpn"}, cid="a"),
        _cmd(
            CommandType.REMOVE_APP,
            {"app_id": "brand"},
            CommandStatus.ACKNOWLEDGED,
            acked=T0 + timedelta(seconds=5),  # after the report: not visible in it yet
            cid="b",
        ),
    ]
    actions = {str(a) for a in _plan(history=history).actions}
    assert "install_app vpn" not in actions and "remove_app brand" not in actions
    assert "install_app payroll" in actions


def test_an_acknowledgement_older_than_the_report_is_superseded_by_the_report() -> None:
    history = [
        _cmd(
            CommandType.INSTALL_APP,
            {"app_id": "vpn"},
            CommandStatus.ACKNOWLEDGED,
            acked=T0 - timedelta(minutes=1),
        )
    ]
    # the device reported after it acknowledged and vpn is not there (uninstalled locally)
    assert "install_app vpn" in {str(a) for a in _plan(history=history).actions}


def test_our_own_contradicted_pending_command_is_cancelled() -> None:
    stale = _cmd(CommandType.INSTALL_APP, {"app_id": "campaigns"}, cid="stale")
    plan = _plan(reported=MARKETING_ON_DEVICE - {(APP, "campaigns")}, history=[stale])
    assert [c.id for c in plan.cancel] == ["stale"]
    assert "remove_app campaigns" not in {str(a) for a in plan.actions}  # not on the device


def test_an_admins_conflicting_command_is_left_alone_and_reported() -> None:
    admins = _cmd(CommandType.REMOVE_APP, {"app_id": "vpn"}, by="admin:bob", cid="adm")
    plan = _plan(history=[admins])
    assert plan.cancel == ()
    assert plan.conflicts == ("remove_app vpn (command adm queued by admin:bob)",)
    assert "install_app vpn" not in {str(a) for a in plan.actions}


def test_an_app_the_mdm_never_managed_is_never_removed() -> None:
    reported = MARKETING_ON_DEVICE | {(APP, "personal.game")}
    assert "remove_app personal.game" not in {str(a) for a in _plan(reported=reported).actions}


def test_an_app_convergence_installed_is_removed_when_no_policy_names_it_any_more() -> None:
    history = [
        _cmd(CommandType.INSTALL_APP, {"app_id": "old"}, CommandStatus.ACKNOWLEDGED, acked=T0)
    ]
    reported = MARKETING_ON_DEVICE | {(APP, "old")}
    plan = _plan(reported=reported, history=history, managed=MANAGED)
    assert "remove_app old" in {str(a) for a in plan.actions}


def test_keys_are_deterministic_and_differ_per_item_state_and_device() -> None:
    vpn = Action(APP, "vpn", True)
    assert idempotency_key("d1", vpn) == idempotency_key("d1", Action(APP, "vpn", True))
    others = {
        idempotency_key("d2", vpn),
        idempotency_key("d1", Action(APP, "vpn", True, previous="c9")),
        idempotency_key("d1", Action(APP, "vpn", False)),
        idempotency_key("d1", Action(APP, "payroll", True)),
    }
    assert idempotency_key("d1", vpn) not in others and len(others) == 4
    assert len(idempotency_key("d1", vpn)) <= 128
    assert desired_version(FINANCE, "event:1") == desired_version(FINANCE, "event:1")
    assert desired_version(FINANCE, "event:1") != desired_version(FINANCE, "event:2")


def test_the_item_state_version_is_its_latest_command() -> None:
    """Two racing runs on the same state plan the same key; after a command for the item
    exists (here: a cancelled install), the next install gets a new version."""
    cancelled = _cmd(
        CommandType.INSTALL_APP, {"app_id": "vpn"}, CommandStatus.CANCELLED, cid="old-vpn"
    )
    first, second = _plan(), _plan()
    assert first.actions == second.actions
    vpn = next(a for a in _plan(history=[cancelled]).actions if a.item == "vpn")
    assert vpn.previous == "old-vpn"
    fresh = next(a for a in first.actions if a.item == "vpn")
    assert idempotency_key("d1", vpn) != idempotency_key("d1", fresh)
