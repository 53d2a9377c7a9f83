"""Reading policy files: YAML documents with the line of every key and value.

A policy file holds one or more YAML documents (``---``). Each becomes a
:class:`SourceDocument`: plain Python data (mappings, lists, str, int, float, bool, None;
YAML dates and timestamps stay strings so the schema sees what the admin wrote) plus a map
from each path inside it to its 1-based line, so later checks report ``file:line: reason``.
Duplicate mapping keys, which YAML itself would silently collapse, are problems here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mdm_core.policy.errors import Problem

__all__ = ["SourceDocument", "PathKey", "read_policy_file", "policy_files", "MAX_FILE_BYTES"]

PathKey = tuple[str | int, ...]
MAX_FILE_BYTES = 1024 * 1024

_SCALAR_TAGS_AS_STR = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:str"}


@dataclass
class SourceDocument:
    """One YAML document of a policy file, with line marks."""

    file: str
    line: int  # where the document starts
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)  # path -> line of the value
    key_lines: dict[PathKey, int] = field(default_factory=dict)  # path -> line of its key
    seen_nodes: set[int] = field(default_factory=set, repr=False)

    def line_of(self, path: PathKey, *, key: bool = False) -> int:
        """Line of ``path`` (its key when ``key``), else of the nearest enclosing node."""
        probe = tuple(path)
        while True:
            if key and probe in self.key_lines:
                return self.key_lines[probe]
            if probe in self.lines:
                return self.lines[probe]
            if not probe:
                return self.line
            probe = probe[:-1]

    def problem(self, path: PathKey, reason: str, *, key: bool = False) -> Problem:
        return Problem(self.file, self.line_of(path, key=key), reason)


def policy_files(directory: Path) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` file under ``directory``, sorted, hidden ones skipped."""
    found = [
        p
        for p in directory.rglob("*")
        if p.suffix in {".yaml", ".yml"}
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    ]
    return sorted(found)


def read_policy_file(path: Path, display: str) -> tuple[list[SourceDocument], list[Problem]]:
    """Parse ``path`` into documents; syntax errors and duplicate keys are problems."""
    problems: list[Problem] = []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [Problem(display, 1, f"cannot read file: {exc.strerror}")]
    if len(raw) > MAX_FILE_BYTES:
        return [], [Problem(display, 1, f"file is larger than {MAX_FILE_BYTES} bytes")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [], [Problem(display, 1, "file is not valid UTF-8")]
    documents: list[SourceDocument] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is None:
                continue
            doc = SourceDocument(file=display, line=node.start_mark.line + 1, data=None)
            doc.data = _convert(node, (), doc, problems)
            documents.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = exc.problem or exc.context or "invalid YAML"
        problems.append(Problem(display, line, f"invalid YAML: {what}"))
        return [], problems
    except yaml.YAMLError as exc:
        return [], [Problem(display, 1, f"invalid YAML: {exc}")]
    return documents, problems


def _convert(node: Node, path: PathKey, doc: SourceDocument, problems: list[Problem]) -> Any:
    if id(node) in doc.seen_nodes:  # an alias: refused (no "billion laughs", no hidden sharing)
        problems.append(Problem(doc.file, node.start_mark.line + 1, "YAML aliases are not allowed"))
        return None
    doc.seen_nodes.add(id(node))
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                problems.append(
                    Problem(doc.file, key_node.start_mark.line + 1, "keys must be plain strings")
                )
                continue
            if key == "<<":
                problems.append(
                    Problem(doc.file, key_node.start_mark.line + 1, "merge keys are not allowed")
                )
                continue
            child = (*path, key)
            if key in out:
                problems.append(
                    Problem(doc.file, key_node.start_mark.line + 1, f"duplicate key {key!r}")
                )
                continue
            doc.key_lines[child] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, child, doc, problems)
        return out
    if isinstance(node, SequenceNode):
        return [_convert(item, (*path, i), doc, problems) for i, item in enumerate(node.value)]
    assert isinstance(node, ScalarNode)
    return _scalar(node)


def _scalar(node: ScalarNode) -> Any:
    if node.tag in _SCALAR_TAGS_AS_STR:
        return node.value
    value = yaml.SafeLoader("").construct_object(node)  # int, float, bool, null
    return value


def iter_paths(data: Any, path: PathKey = ()) -> Iterator[PathKey]:
    """Every path inside ``data`` (used by tests)."""
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from iter_paths(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from iter_paths(value, (*path, i))
