"""Standing rules of the code base: the import direction and declared public names."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "mdm_core": ("posture_gateway", "idp_connectors"),
    "idp_connectors": ("posture_gateway",),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in _imports(path)
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert violations == []


def _modules() -> list[str]:
    names: list[str] = []
    for package in ("mdm_core", "idp_connectors", "posture_gateway"):
        if not (ROOT / package / "__init__.py").exists():
            continue
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
            if ".migrations" in info.name:
                continue
            names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", _modules())
def test_public_modules_have_docstring_and_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no module docstring"
    if module_name.rsplit(".", 1)[-1].startswith("_") or module.__file__ is None:
        return
    if module.__file__.endswith("__init__.py"):
        return
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module_name} does not declare __all__"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == [], f"{module_name}.__all__ names what it does not define: {missing}"


def _runtime_imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """Our modules imported at run time anywhere in ``tree`` (module level or inside a
    function), leaving out ``if TYPE_CHECKING:`` blocks (never executed)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                found.add(node.module)
            found.update(m for m in (f"{node.module}.{a.name}" for a in node.names) if m in modules)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_import_cycles() -> None:
    """No module of ours imports itself back through others, not even from inside a function
    (a function-level import only hides a cycle; the fix is to break it)."""
    files: dict[str, Path] = {}
    for package in ("mdm_core", "idp_connectors", "posture_gateway"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    modules = set(files)
    graph = {
        m: _runtime_imports(ast.parse(p.read_text("utf-8")), modules) for m, p in files.items()
    }

    cycles: list[list[str]] = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], {start}
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    cycles.append(path)
                elif nxt not in seen and nxt > start:  # each cycle once, from its least module
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
