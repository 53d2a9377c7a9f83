"""Standing rules of the code base: the import direction, declared public names, no import
cycle (not even for type checking), and a gateway wired at module level (no hidden imports,
no app.extensions fallbacks, pages in templates)."""

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


def _module_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package in ("mdm_core", "idp_connectors", "posture_gateway"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _all_imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """Our modules imported anywhere in ``tree``, ``if TYPE_CHECKING:`` blocks included."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                found.add(node.module)
            found.update(m for m in (f"{node.module}.{a.name}" for a in node.names) if m in modules)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], {start}
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    cycles.append(path)
                elif nxt not in seen and nxt > start:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return cycles


def test_no_import_cycles_even_for_type_checking() -> None:
    """Not even a ``TYPE_CHECKING`` import closes a loop: shared types live in a module both
    sides import (e.g. :mod:`mdm_core.device.command_model` for the command service and the
    command store protocol), never in one of the two."""
    files = _module_files()
    modules = set(files)
    graph = {m: _all_imports(ast.parse(p.read_text("utf-8")), modules) for m, p in files.items()}
    cycles = _cycles(graph)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_type_checking_imports() -> None:
    """The guard itself: a loop closed only under ``TYPE_CHECKING`` is found."""
    a = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import X\n")
    b = ast.parse("from pkg.a import Y\n")
    modules = {"pkg.a", "pkg.b"}
    graph = {"pkg.a": _all_imports(a, modules), "pkg.b": _all_imports(b, modules)}
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]


_OURS = ("mdm_core", "idp_connectors", "posture_gateway")


def _hidden_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """Imports of our packages below module level (functions, methods, classes; a
    ``TYPE_CHECKING`` block is not run and is allowed) and dynamic imports."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        for child in ast.iter_child_nodes(node):
            if nested and isinstance(child, ast.ImportFrom) and child.level == 0:
                if child.module and child.module.split(".")[0] in _OURS:
                    found.append((child.lineno, f"from {child.module} import ..."))
            elif nested and isinstance(child, ast.Import):
                found.extend(
                    (child.lineno, f"import {a.name}")
                    for a in child.names
                    if a.name.split(".")[0] in _OURS
                )
            elif isinstance(child, ast.Call):
                func = child.func
                name = getattr(func, "attr", None) or getattr(func, "id", None)
                if name in ("import_module", "__import__"):
                    found.append((child.lineno, f"{name}(...)"))
            scope = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            visit(child, nested or scope)

    visit(tree, False)
    return found


def test_gateway_imports_its_own_packages_at_module_level() -> None:
    """posture_gateway imports mdm_core, idp_connectors and itself at module level only: a
    function-level or ``importlib`` import is how an import loop hides (the fix is to break
    the loop), and the app factory wires nothing late."""
    violations = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in sorted((ROOT / "posture_gateway").rglob("*.py"))
        for line, what in _hidden_imports(ast.parse(path.read_text("utf-8")))
    ]
    assert violations == []


def test_the_hidden_import_check_sees_them() -> None:
    tree = ast.parse(
        "import importlib\n"
        "def f():\n    from posture_gateway.app import create_app\n"
        "def g():\n    import json\n    return importlib.import_module('posture_gateway.x')\n"
        "class C:\n    def m(self):\n        import mdm_core.runtime\n"
    )
    assert [line for line, _ in _hidden_imports(tree)] == [3, 6, 9]


def _calls_in(path: Path, names: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {func.id}")
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "get"
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "extensions"
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: extensions.get")
    return found


def test_gateway_pages_are_templates_and_services_are_not_looked_up_with_fallbacks() -> None:
    """No ``render_template_string`` (pages live in ``pages/templates``) and no
    ``app.extensions.get(...)`` (every service is installed before the first request)."""
    violations = [
        hit
        for path in sorted((ROOT / "posture_gateway").rglob("*.py"))
        for hit in _calls_in(path, ("render_template_string",))
    ]
    assert violations == []
