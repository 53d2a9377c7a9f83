"""Invalid policy files are refused with the right file and line, one table row per mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdm_core.policy.errors import PolicyValidationError
from mdm_core.policy.loader import load_policy_directory
from mdm_core.policy.schema import POLICY_SCHEMA, schema_json

from .factories import NOW, REPO_POLICIES, SIMPLE, policy_set, problems

RULE_OK = "  - {id: enc, severity: critical, storage_encrypted: required, remediation: fix}\n"
HEAD = "kind: CompliancePolicy\nid: p\nassign: {}\nrules:\n"

# (file text, expected line, expected fragment of the reason)
CASES: list[tuple[str, str, int, str]] = [
    ("unknown top-level key", HEAD + RULE_OK + "colour: blue\n", 6, "unknown key 'colour'"),
    (
        "unknown rule key",
        HEAD + "  - id: a\n    severity: low\n    firewall: required\n    remediation: x\n"
        "    grace: {warn: 0d}\n    sevrity: high\n",
        10,
        "unknown key 'sevrity'",
    ),
    (
        "wrong type",
        HEAD + "  - {id: a, severity: low, passcode_min_length: six, remediation: x}\n",
        5,
        "expected integer",
    ),
    ("unknown kind", "kind: Nonsense\nid: x\n", 1, "unknown kind 'Nonsense'"),
    ("missing kind", "id: x\n", 1, "missing required key 'kind'"),
    (
        "missing rules",
        "kind: CompliancePolicy\nid: p\nassign: {}\n",
        1,
        "missing required key 'rules'",
    ),
    (
        "bad severity",
        HEAD + "  - {id: a, severity: urgent, firewall: required, remediation: x}\n",
        5,
        "'urgent' is not allowed",
    ),
    (
        "bad id",
        "kind: CompliancePolicy\nid: Bad Id\nassign: {}\nrules:\n" + RULE_OK,
        2,
        "does not match",
    ),
    ("bad duration", HEAD + RULE_OK + "max_posture_age: soon\n", 6, "'soon' does not match"),
    (
        "unquoted version",
        HEAD + "  - id: a\n    severity: high\n    min_os_version: {ios: 17.4}\n"
        "    remediation: x\n",
        7,
        "quote it",
    ),
    (
        "unknown platform",
        HEAD + '  - id: a\n    severity: high\n    min_os_version: {symbian: "1"}\n'
        "    remediation: x\n",
        7,
        "symbian",
    ),
    (
        "two checks in one rule",
        HEAD + "  - id: a\n    severity: high\n    firewall: required\n"
        "    secure_boot: required\n    remediation: x\n",
        5,
        "exactly one check",
    ),
    ("no check", HEAD + "  - {id: a, severity: high, remediation: x}\n", 5, "found none"),
    (
        "bad CEL syntax",
        HEAD + "  - id: a\n    severity: low\n    cel: 'posture.os_version =='\n"
        "    remediation: x\n",
        7,
        "CEL does not parse",
    ),
    (
        "CEL unknown field",
        HEAD + "  - id: a\n    severity: low\n    cel: posture.colour == 'red'\n"
        "    remediation: x\n",
        7,
        "unknown posture field",
    ),
    (
        "CEL unknown variable",
        HEAD + "  - id: a\n    severity: low\n    cel: weather == 'sunny'\n    remediation: x\n",
        7,
        "Undefined variable",
    ),
    (
        "CEL not a bool",
        HEAD + "  - id: a\n    severity: low\n    cel: posture.os_version\n    remediation: x\n",
        7,
        "not bool",
    ),
    (
        "CEL type error",
        HEAD + "  - id: a\n    severity: low\n    cel: posture.passcode_min_length > 'x'\n"
        "    remediation: x\n",
        7,
        "sample posture",
    ),
    (
        "critical with grace",
        HEAD + "  - id: a\n    severity: critical\n    not_jailbroken: true\n"
        "    grace: {warn: 0d}\n    remediation: x\n",
        8,
        "cannot have a grace",
    ),
    (
        "grace not starting at 0",
        HEAD + "  - id: a\n    severity: high\n    firewall: required\n"
        "    grace: {warn: 1d, block: 3d}\n    remediation: x\n",
        8,
        "must start at 0d",
    ),
    (
        "grace going backwards",
        HEAD + "  - id: a\n    severity: high\n    firewall: required\n"
        "    grace: {warn: 0d, restrict: 7d, block: 3d}\n    remediation: x\n",
        8,
        "must come after",
    ),
    (
        "duplicate rule id",
        HEAD + RULE_OK + "  - {id: enc, severity: high, firewall: required, remediation: x}\n",
        6,
        "duplicate rule id 'enc'",
    ),
    (
        "conflicting typed checks",
        HEAD + "  - {id: a, severity: high, passcode_min_length: 6, "
        "remediation: x}\n  - {id: b, severity: high, passcode_min_length: 8, remediation: x}\n",
        6,
        "conflict: rule 'b' repeats check passcode_min_length",
    ),
    (
        "required and forbidden",
        HEAD + "  - {id: a, severity: high, required_apps: [x.app], "
        "remediation: x}\n  - {id: b, severity: high, forbidden_apps: [x.app], remediation: x}\n",
        5,
        "required here and forbidden",
    ),
    (
        "impossible date",
        HEAD + "  - {id: a, severity: high, min_security_patch_level: "
        "'2024-02-30', remediation: x}\n",
        5,
        "not a real date",
    ),
    ("duplicate YAML key", HEAD + RULE_OK + "id: q\n", 6, "duplicate key 'id'"),
    ("YAML syntax", "kind: CompliancePolicy\nid: [unclosed\n", 3, "invalid YAML"),
    ("document is a list", "- a\n- b\n", 1, "must be a mapping"),
    (
        "byod full wipe",
        "kind: OffboardingPolicy\nid: o\nactions:\n  corporate: full_wipe\n  byod: full_wipe\n",
        5,
        "BYOD devices only get selective_wipe",
    ),
    (
        "two-person rule not a boolean",
        "kind: OffboardingPolicy\nid: o\nactions: {corporate: full_wipe}\ntwo_person_rule: 'yes'\n",
        4,
        "two_person_rule: expected boolean",
    ),
    (
        "access scopes empty",
        "kind: AccessPolicy\nid: a\napplications: [{client_id: c}]\n"
        "sensitivity: low\noutcomes:\n  restrict: {scopes: []}\n",
        6,
        "not valid",
    ),
    (
        "config installs and removes",
        "kind: ConfigurationPolicy\nid: c\nassign: {}\napps:\n  install: [a]\n  remove: [a]\n",
        6,
        "both installed and removed",
    ),
    (
        "privacy unknown field",
        "kind: PrivacyProfile\nid: pp\nownership: byod\ncollect: [dna]\n"
        "notice: {can_see: [], cannot_see: []}\n",
        4,
        "'dna' is not allowed",
    ),
]


@pytest.mark.parametrize(("name", "text", "line", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_invalid_file_is_refused_with_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, fragment: str
) -> None:
    found = problems(tmp_path, {"bad.yaml": text})
    expected_prefix = f"{tmp_path / 'bad.yaml'}:{line}: "
    matching = [p for p in found if p.startswith(expected_prefix) and fragment in p]
    assert matching, f"{name}: wanted line {line} with {fragment!r}, got {found}"


def test_every_mistake_is_reported_not_just_the_first(tmp_path: Path) -> None:
    text = HEAD + "  - {id: a, severity: urgent, firewall: maybe, remediation: x}\nextra: 1\n"
    found = problems(tmp_path, {"bad.yaml": text})
    assert len(found) == 3


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.yaml": SIMPLE, "b.yaml": SIMPLE})
    assert any(f"{tmp_path / 'b.yaml'}:2: duplicate id 'base'" in p for p in found), found


def test_several_documents_per_file_keep_their_lines(tmp_path: Path) -> None:
    text = (
        "kind: OffboardingPolicy\nid: o\nactions: {corporate: full_wipe}\n---\n"
        + HEAD.replace("id: p", "id: q")
        + "  - {id: a, severity: nope, firewall: required, remediation: x}\n"
    )
    found = problems(tmp_path, {"multi.yaml": text})
    assert found == [
        f"{tmp_path / 'multi.yaml'}:9: rules[0].severity: 'nope' is not allowed "
        "(use: critical, high, medium, low)"
    ]


def test_unknown_group_reference_against_the_directory(tmp_path: Path) -> None:
    text = "kind: CompliancePolicy\nid: p\nassign:\n  groups: [finance, fnance]\nrules:\n" + RULE_OK
    found = problems(tmp_path, {"g.yaml": text}, known_groups={"finance"})
    assert found == [
        f"{tmp_path / 'g.yaml'}:4: assign.groups[1]: unknown group 'fnance' "
        "(not in the directory mirror)"
    ]
    assert problems(tmp_path, {"g.yaml": text}) == []  # no mirror given: not checked


def test_rule_blind_under_the_privacy_profile_is_a_conflict(tmp_path: Path) -> None:
    files = {
        "p.yaml": HEAD + "  - {id: a, severity: high, forbidden_apps: [x], remediation: x}\n",
        "privacy/byod.yaml": "kind: PrivacyProfile\nid: b\nownership: byod\n"
        "collect: [managed_apps]\nnotice: {can_see: [x], cannot_see: [y]}\n",
    }
    found = problems(tmp_path, files)
    assert any(":5: conflict: rule 'a' reads installed_apps" in p for p in found), found


def test_two_access_policies_for_one_app(tmp_path: Path) -> None:
    text = (
        "kind: AccessPolicy\nid: a1\napplications: [{client_id: c}]\nsensitivity: low\n---\n"
        "kind: AccessPolicy\nid: a2\napplications: [{client_id: c}]\nsensitivity: high\n"
    )
    found = problems(tmp_path, {"a.yaml": text})
    assert any(":8: conflict: application 'c'" in p for p in found), found


def test_empty_and_missing_directory(tmp_path: Path) -> None:
    assert "no policy files" in problems(tmp_path, {})[0]
    with pytest.raises(PolicyValidationError, match="does not exist"):
        load_policy_directory(tmp_path / "nope", now=NOW)


def test_oversized_and_binary_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_bytes(b"#" * (1024 * 1024 + 1))
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    found = problems(tmp_path, {})
    assert any("larger than" in p for p in found) and any("UTF-8" in p for p in found)


def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    text = (
        "kind: AccessPolicy\nid: a\napplications: &x [{client_id: c}]\nsensitivity: low\n"
        "description: *x\n"
    )
    assert any("aliases are not allowed" in p for p in problems(tmp_path, {"a.yaml": text}))


def test_shipped_policies_validate_and_schema_file_is_current() -> None:
    ps = load_policy_directory(REPO_POLICIES, now=NOW)
    assert ps.rule_count() >= 15
    published = (REPO_POLICIES / "schema" / "policy.schema.json").read_text(encoding="utf-8")
    assert published == schema_json()
    assert json.loads(published) == POLICY_SCHEMA


def test_shipped_policies_validate_against_the_published_schema() -> None:
    """The JSON file alone (as an editor uses it) accepts every shipped document."""
    import jsonschema

    from mdm_core.policy.source import policy_files, read_policy_file

    schema = json.loads((REPO_POLICIES / "schema" / "policy.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for path in policy_files(REPO_POLICIES):
        docs, found = read_policy_file(path, str(path))
        assert found == []
        for doc in docs:
            assert list(validator.iter_errors(doc.data)) == [], path
    assert list(validator.iter_errors({"kind": "CompliancePolicy", "id": "x"})) != []


def test_compiled_set_is_reusable(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"p.yaml": SIMPLE})
    assert ps.policy_ids == ("base",) and ps.fingerprint and ps.files
