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
