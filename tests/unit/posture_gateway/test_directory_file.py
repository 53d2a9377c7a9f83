"""Directory files for ``posture directory import``: YAML and CSV, every mistake with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdm_core.directory.sync import SourceGroup, SourceUser
from posture_gateway.directory.file import load_directory_file
from posture_gateway.oidc.yamlconf import ConfigFileError

YAML = """\
users:
  - username: bob
    id: u-bob
    email: bob@example.com
    name: Bob Example
    groups: [payroll]
  - username: carol
    active: false
groups:
  - name: payroll
    groups: [finance]
"""

CSV = """\
kind,username,id,email,name,active,groups
user,bob,u-bob,bob@example.com,Bob Example,true,payroll
,carol,,,,false,
group,,,,payroll,,finance;everyone
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "text"), [("people.yaml", YAML), ("people.csv", CSV)])
def test_yaml_and_csv_give_the_same_directory(tmp_path: Path, name: str, text: str) -> None:
    parsed = load_directory_file(_write(tmp_path, name, text))
    assert parsed.users == [
        SourceUser(
            id="u-bob",
            username="bob",
            email="bob@example.com",
            display_name="Bob Example",
            groups=("payroll",),
        ),
        SourceUser(id="carol", username="carol", active=False),
    ]
    assert parsed.groups[0].name == "payroll"
    assert parsed.groups[0].groups[0] == "finance"
    assert isinstance(parsed.groups[0], SourceGroup)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.yaml", "users:\n  - username: bob\n  - id: x\n", "a.yaml:3: users[1].username"),
        ("a.yaml", "users:\n  - username: bob\n    role: admin\n", "users[0].role: Extra inputs"),
        ("a.yaml", "people: []\n", "a.yaml:1: unknown top-level keys ['people']"),
        ("a.yaml", "users: {bob: 1}\n", "'users' must be a list"),
        ("a.yaml", "users: [\n", "not valid YAML"),
        ("a.yaml", "- just a list\n", "expected a mapping"),
        ("a.csv", "username,role\nbob,admin\n", "a.csv:1: unknown columns ['role']"),
        ("a.csv", "kind,username\nrobot,bob\n", "a.csv:2: kind must be user or group"),
        ("a.csv", "kind,username,name\ngroup,bob,g\n", "a.csv:2: a group row has no username"),
        ("a.csv", "kind,username,active\nuser,bob,maybe\n", "a.csv:2: user.active"),
        ("a.csv", "", "empty CSV"),
    ],
)
def test_mistakes_name_the_file_and_line(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    with pytest.raises(ConfigFileError) as err:
        load_directory_file(_write(tmp_path, name, text))
    assert expected in str(err.value)


def test_every_mistake_is_reported_at_once(tmp_path: Path) -> None:
    text = "users:\n  - id: a\n  - id: b\ngroups:\n  - id: g\n"
    with pytest.raises(ConfigFileError) as err:
        load_directory_file(_write(tmp_path, "many.yaml", text))
    assert len(err.value.problems) == 3


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_directory_file(tmp_path / "missing.yaml")
