"""The layout holds (README "Layout"): `crdt/` is pure (pycrdt and the stdlib only, no I/O, no
asyncio); `server/` is a few sub-packages named after what they hold; no module imports another
in a cycle, not even for type hints only; `server` never imports `bench`; and every module's
`__all__` names exactly the public things it defines."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CRDT = {"asyncio", "anyio", "socket", "sqlite3", "aiosqlite", "starlette", "server"}
SERVER_PACKAGES = {"admission", "sync", "store", "http", "cluster", "identity", "webhooks"}
SERVER_TOP_MODULES = {
    "__init__",
    "__main__",
    "access",
    "app",
    "argtypes",  # the argument types `draftsync` and `draftsync bench` share
    "auth",
    "cli",
    "config",
    "errors",
    "faults",
    "logs",
    "metrics",
    "service",
    "supervisor",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    module_name(path): path
    for package in ("crdt", "server", "draftsync")
    for path in sorted((ROOT / package).rglob("*.py"))
}


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any place (functions and `if TYPE_CHECKING:` included);
    `from package import name` counts as importing `package.name` when that is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in MODULES
            }
    return found


@pytest.mark.parametrize(
    "name", [n for n in MODULES if n.startswith("crdt")], ids=lambda n: n.removeprefix("crdt.")
)
def test_crdt_imports_only_pycrdt_the_stdlib_and_itself(name: str) -> None:
    roots = {imported.split(".")[0] for imported in imports_of(MODULES[name])}
    allowed = set(sys.stdlib_module_names) | {"pycrdt", "crdt", "__future__"}
    assert roots <= allowed, f"{name} imports {sorted(roots - allowed)}"
    assert not roots & FORBIDDEN_IN_CRDT, f"{name} does I/O or asyncio"


def test_server_is_a_few_subpackages_beside_its_entry_points() -> None:
    server = ROOT / "server"
    packages = {p.name for p in server.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in server.glob("*.py")}
    assert packages == SERVER_PACKAGES
    assert modules == SERVER_TOP_MODULES, f"move {sorted(modules - SERVER_TOP_MODULES)}"


def test_server_never_imports_bench() -> None:
    offenders = [
        name
        for name, path in MODULES.items()
        if any(imported.split(".")[0] == "bench" for imported in imports_of(path))
    ]
    assert not offenders, f"{offenders} import bench (the CLI finds it at run time)"


def test_no_import_cycles_not_even_type_only() -> None:
    graph = {
        name: {imported for imported in imports_of(path) if imported in MODULES}
        for name, path in MODULES.items()
    }
    # A module imports its package (its __init__) too; an __init__ importing its own
    # submodules is the usual shape, not a cycle of design.
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append([*visiting[visiting.index(name) :], name])
            return
        visiting.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def public_definitions(path: Path) -> set[str]:
    """Names a module defines at top level (classes, functions, assignments), not imports."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_") and n not in {"logger", "T", "M"}}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.endswith("__main__")))
def test_all_is_exactly_what_the_module_defines(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    defined = public_definitions(MODULES[name])
    if exported is None:
        assert not defined or MODULES[name].name in {"__init__.py", "__main__.py"}, (
            f"{name} defines {sorted(defined)} but has no __all__"
        )
        return
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    assert set(exported) == defined, (
        f"{name}.__all__ differs from its public definitions: "
        f"extra {sorted(set(exported) - defined)}, missing {sorted(defined - set(exported))}"
    )


IO_MODULES = {"asyncio", "anyio", "socket", "sqlite3", "aiosqlite", "starlette", "redis", "uvicorn"}
IO_FREE = "server.sync.core"  # the sync core (issue 20): the room's rules, none of its I/O


def test_the_sync_core_stays_io_free() -> None:
    """Neither the core nor any of our modules it imports, however indirectly, imports asyncio
    (or another I/O library), the store, the gate or the connection: `server/sync/room.py`
    does the I/O around it."""
    reached: set[str] = set()
    pending = [IO_FREE]
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        pending += [imported for imported in imports_of(MODULES[name]) if imported in MODULES]
    for name in sorted(reached):
        imported = imports_of(MODULES[name])
        roots = {module.split(".")[0] for module in imported}
        assert not roots & IO_MODULES, f"{IO_FREE} reaches {name}, which imports I/O"
    forbidden = {"server.store", "server.sync.gate", "server.sync.connection"}
    reached_forbidden = {n for n in reached if any(n.startswith(f) for f in forbidden)}
    assert not reached_forbidden, f"{IO_FREE} reaches {sorted(reached_forbidden)}"


def test_no_two_test_modules_share_a_name() -> None:
    """The test folders are not packages (pytest's default import mode puts each on sys.path),
    so two `test_X.py` in different folders collide at collection in a fresh clone."""
    root = Path(__file__).parent
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted(root.rglob("test_*.py")):
        if "node_modules" in path.parts:
            continue
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(root)} and {path.relative_to(root)}")
        seen.setdefault(path.name, path)
    assert not clashes, clashes


def test_a_server_start_imports_neither_the_webhook_client_nor_the_user_agent_parser() -> None:
    """Each is imported when first needed: httpx by a server with webhooks (~90 ms), the
    user-agent parser when the first session ends (~200 ms, on a worker thread)."""
    code = (
        "import sys, server.app, server.cli; "
        "print(sorted(m for m in ('httpx', 'user_agents') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
