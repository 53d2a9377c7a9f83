"""Load a YAML list of entries into pydantic models with ``file:line: what is wrong`` errors.

Used for the relying-party file and the local users file: ``{<key>: [ {...}, {...} ]}``.
Every entry is validated; all problems are collected and raised together in one
:class:`ConfigFileError` so an admin fixes the file in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["ConfigFileError", "Located", "load_entries"]

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(Exception):
    """A configuration file is invalid; ``problems`` are ``file:line: message`` strings."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class Located:
    """A validated entry with the line it starts on (for cross-entry errors)."""

    def __init__(self, value: Any, line: int, node: yaml.Node) -> None:
        self.value = value
        self.line = line
        self.node = node


def _line_of(node: yaml.Node, loc: Sequence[int | str]) -> int:
    current = node
    for part in loc:
        if isinstance(current, yaml.MappingNode):
            match = next((v for k, v in current.value if k.value == part), None)
            if match is None:
                break
            current = match
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(current.value):
                break
            current = current.value[part]
        else:
            break
    return int(current.start_mark.line) + 1


def load_entries(path: Path, key: str, model: type[M]) -> list[Located]:
    """Validate ``path``'s ``key`` list entry by entry; raise :class:`ConfigFileError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigFileError([f"{path}{line}: not valid YAML: {exc}"]) from exc
    if root is None or not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise ConfigFileError([f"{path}:1: expected a mapping with a '{key}' list"])
    entries = data.get(key)
    list_node = next((v for k, v in root.value if k.value == key), None)
    if not isinstance(entries, list) or not isinstance(list_node, yaml.SequenceNode):
        raise ConfigFileError([f"{path}:1: expected a '{key}' list"])
    extra = sorted(set(data) - {key})
    problems: list[str] = []
    if extra:
        problems.append(f"{path}:1: unknown top-level keys {extra}")
    loaded: list[Located] = []
    for index, (entry, node) in enumerate(zip(entries, list_node.value, strict=True)):
        try:
            value = model.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                where = ".".join(str(p) for p in loc) or "(entry)"
                problems.append(
                    f"{path}:{_line_of(node, loc)}: {key}[{index}].{where}: {err['msg']}"
                )
            continue
        loaded.append(Located(value, int(node.start_mark.line) + 1, node))
    if problems:
        raise ConfigFileError(problems)
    return loaded
