"""The layers of design.md hold: `crdt/` is pure (pycrdt and the stdlib only, no I/O, no
asyncio), and every module's `__all__` names exactly its public definitions."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CRDT_MODULES = sorted((ROOT / "crdt").glob("*.py"))
FORBIDDEN_IN_CRDT = {"asyncio", "anyio", "socket", "sqlite3", "aiosqlite", "starlette", "server"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", CRDT_MODULES, ids=lambda p: p.name)
def test_crdt_imports_only_pycrdt_the_stdlib_and_itself(path: Path) -> None:
    roots = imported_roots(path)
    allowed = set(sys.stdlib_module_names) | {"pycrdt", "crdt", "__future__"}
    assert roots <= allowed, f"{path.name} imports {sorted(roots - allowed)}"
    assert not roots & FORBIDDEN_IN_CRDT, f"{path.name} does I/O or asyncio"


PUBLIC_MODULES = [
    f"{package}.{path.stem}"
    for package in ("crdt", "server")
    for path in sorted((ROOT / package).glob("*.py"))
    if not path.stem.startswith("_")
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_lists_what_the_module_defines(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        pytest.skip(f"{name} has no __all__")
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
