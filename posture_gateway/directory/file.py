"""Directory files for ``posture directory import``: YAML or CSV users and nested groups.

YAML::

    users:
      - username: bob               # required; what a login or an upstream IdP names
        id: u-bob                   # the mirror id (default: the username)
        email: bob@example.com
        name: Bob Example
        active: true                # default true; false disables the account
        groups: [payroll]           # groups the user is directly in
    groups:
      - name: payroll
        groups: [finance]           # payroll is nested in finance (its members are in both)

CSV (a header row; ``kind`` is ``user`` (default) or ``group``; lists split on ``;``)::

    kind,username,id,email,name,active,groups
    user,bob,u-bob,bob@example.com,Bob Example,true,payroll
    group,,,,payroll,,finance

For a ``group`` row, ``name`` is the group's name and ``groups`` the groups it is nested in.
Every mistake is reported as ``file:line: what is wrong``, all at once, before anything is
written.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdm_core.directory.sync import SourceGroup, SourceUser
from posture_gateway.oidc.yamlconf import ConfigFileError

__all__ = ["DirectoryFile", "load_directory_file", "ConfigFileError"]

_NAME = Field(min_length=1, max_length=128, pattern=r"^[^\s;,][^;,]*$")


class _User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1, max_length=256)
    id: str | None = Field(default=None, min_length=1, max_length=128)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=256)
    active: bool = True
    groups: tuple[str, ...] = ()

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name.strip() or len(name) > 256:
                raise ValueError(f"bad group name {name!r}")
        return tuple(dict.fromkeys(n.strip() for n in value))


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=256)
    id: str | None = Field(default=None, min_length=1, max_length=128)
    groups: tuple[str, ...] = ()

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _User._group_names(value)


@dataclass(frozen=True)
class DirectoryFile:
    users: list[SourceUser]
    groups: list[SourceGroup]


def _problems(path: Path, line: int, what: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(entry)"
        out.append(f"{path}:{line}: {what}.{where}: {err['msg'].removeprefix('Value error, ')}")
    return out


def _to_user(u: _User) -> SourceUser:
    return SourceUser(
        id=u.id or u.username,
        username=u.username,
        email=u.email,
        display_name=u.name,
        active=u.active,
        groups=u.groups,
    )


def _to_group(g: _Group) -> SourceGroup:
    return SourceGroup(name=g.name, id=g.id, groups=g.groups)


def _load_yaml(path: Path, text: str) -> DirectoryFile:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigFileError([f"{path}{at}: not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise ConfigFileError([f"{path}:1: expected a mapping with 'users' and/or 'groups'"])
    problems: list[str] = []
    extra = sorted(str(k) for k in set(data) - {"users", "groups"})
    if extra:
        problems.append(f"{path}:1: unknown top-level keys {extra} (use users, groups)")
    nodes = {k.value: v for k, v in root.value}
    users: list[SourceUser] = []
    groups: list[SourceGroup] = []
    for key, model in (("users", _User), ("groups", _Group)):
        entries = data.get(key) or []
        node = nodes.get(key)
        if not isinstance(entries, list) or (entries and not isinstance(node, yaml.SequenceNode)):
            problems.append(f"{path}:1: '{key}' must be a list")
            continue
        items = node.value if isinstance(node, yaml.SequenceNode) else []
        for index, (entry, item) in enumerate(zip(entries, items, strict=True)):
            line = int(item.start_mark.line) + 1
            try:
                parsed: Any = model.model_validate(entry)
            except ValidationError as exc:
                problems.extend(_problems(path, line, f"{key}[{index}]", exc))
                continue
            if isinstance(parsed, _User):
                users.append(_to_user(parsed))
            else:
                groups.append(_to_group(parsed))
    if problems:
        raise ConfigFileError(problems)
    return DirectoryFile(users, groups)


_CSV_COLUMNS = {"kind", "username", "id", "email", "name", "active", "groups"}


def _load_csv(path: Path, text: str) -> DirectoryFile:
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or [])
    if not header:
        raise ConfigFileError([f"{path}:1: empty CSV (expected a header row)"])
    unknown = sorted(header - _CSV_COLUMNS)
    if unknown:
        raise ConfigFileError(
            [f"{path}:1: unknown columns {unknown} (use {', '.join(sorted(_CSV_COLUMNS))})"]
        )
    problems: list[str] = []
    users: list[SourceUser] = []
    groups: list[SourceGroup] = []
    for row in reader:
        line = reader.line_num
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        kind = values.pop("kind", "") or "user"
        names = tuple(g.strip() for g in values.pop("groups", "").split(";") if g.strip())
        present = {k: v for k, v in values.items() if v}
        try:
            if kind == "user":
                users.append(_to_user(_User.model_validate({**present, "groups": names})))
            elif kind == "group":
                stray = sorted(set(present) - {"name", "id"})
                if stray:
                    problems.append(f"{path}:{line}: a group row has no {', '.join(stray)}")
                    continue
                groups.append(_to_group(_Group.model_validate({**present, "groups": names})))
            else:
                problems.append(f"{path}:{line}: kind must be user or group, not {kind!r}")
        except ValidationError as exc:
            problems.extend(_problems(path, line, kind, exc))
    if problems:
        raise ConfigFileError(problems)
    return DirectoryFile(users, groups)


def load_directory_file(path: Path) -> DirectoryFile:
    """Parse and validate ``path`` (``.csv``: CSV; anything else: YAML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror}"]) from exc
    if path.suffix.lower() == ".csv":
        return _load_csv(path, text)
    return _load_yaml(path, text)
