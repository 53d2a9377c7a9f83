"""Package rule: ``mdm_core.device.wipes`` is the only module that queues a full wipe.

Whatever enqueues a ``wipe`` elsewhere would bypass the two-person rule (the corporate-only
rule holds in the command service anyway). The check reads every source module of the three
packages: a call to ``enqueue`` / ``enqueue_many`` whose arguments name ``"wipe"`` or
``CommandType.WIPE``, and any other mention of ``CommandType.WIPE`` outside the modules that
define, refuse or queue it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("mdm_core", "idp_connectors", "posture_gateway")
ALLOWED_ENQUEUE = {"mdm_core/device/wipes.py"}
#: the command model defines it; the command service refuses it and cancels it at delivery.
ALLOWED_MENTION = ALLOWED_ENQUEUE | {
    "mdm_core/device/command_model.py",
    "mdm_core/device/commands.py",
}


def _names_wipe(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and node.value == "wipe":
        return True
    if isinstance(node, ast.Attribute) and node.attr == "WIPE":
        return True
    return isinstance(node, ast.Attribute) and node.attr == "value" and _names_wipe(node.value)


def _sources() -> list[tuple[str, ast.Module]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            found.append((rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)))
    return found


def _enqueues_wipe(tree: ast.Module) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr not in {"enqueue", "enqueue_many"}:
            continue
        args = [*node.args, *(k.value for k in node.keywords)]
        if any(_names_wipe(a) for arg in args for a in ast.walk(arg)):
            lines.append(node.lineno)
    return lines


def test_only_the_wipe_service_enqueues_a_full_wipe() -> None:
    offenders = {rel: lines for rel, tree in _sources() if (lines := _enqueues_wipe(tree))}
    assert set(offenders) <= ALLOWED_ENQUEUE, offenders
    assert "mdm_core/device/wipes.py" in offenders  # the rule still sees the real one


def test_command_type_wipe_is_named_only_where_it_is_defined_refused_or_queued() -> None:
    mentions = {
        rel
        for rel, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "WIPE"
        and isinstance(node.value, ast.Name)
        and node.value.id == "CommandType"
    }
    assert mentions <= ALLOWED_MENTION, mentions - ALLOWED_MENTION


def test_the_rule_catches_the_ways_of_writing_it() -> None:
    for text in (
        'commands.enqueue(d, "wipe", {}, created_by=a)',
        "self.commands.enqueue_many(ids, CommandType.WIPE.value, created_by=a)",
        "core.commands.enqueue(d, command_type=CommandType.WIPE, created_by=a)",
    ):
        assert _enqueues_wipe(ast.parse(text)) == [1], text
    assert _enqueues_wipe(ast.parse('commands.enqueue(d, "selective_wipe", {})')) == []
