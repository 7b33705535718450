"""Each SQL statement of the store is written once (server/store/statements.py) and rendered
for SQLite and PostgreSQL by `server.store.dialect`: the backends write none of them again,
and every one renders, and compiles, in both dialects."""

from __future__ import annotations

import ast
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.services import PostgresCluster
from server.store import statements
from server.store.dialect import POSTGRES, SQLITE, Dialect, Statement
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore

STORE = Path(statements.__file__).parent
BACKENDS = ("sqlite.py", "postgres.py", "sqlite_webhooks.py", "postgres_webhooks.py")

# What a backend may still write itself, each for a reason that is the backend's alone.
BACKEND_SPECIFIC = {
    "draft_activity": "PostgreSQL keeps activity by a trigger; SQLite's schema 2-4 history",
    "events_v7": "SQLite's schema 7: the journal copied into a table without AUTOINCREMENT",
    "pg_advisory": "PostgreSQL's advisory locks (versions, reviews, migrations)",
    "FOR UPDATE": "PostgreSQL's row lock of a draft whose access changes",
    "unnest(": "PostgreSQL's arrays (last versions of many drafts in one trip)",
    "ANY($": "PostgreSQL's arrays (a fan-out catch-up's events of several types in one trip)",
}
_SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP)\b")
_TABLE_USE = re.compile(r"\b(?:FROM|INTO|UPDATE|TABLE|ON|JOIN)\s+(\w+)")


def all_statements() -> Iterator[tuple[str, Statement]]:
    for name in statements.__all__:
        value = getattr(statements, name)
        if isinstance(value, Statement):
            yield name, value
        elif isinstance(value, tuple) and all(isinstance(v, Statement) for v in value):
            yield from ((f"{name}[{i}]", v) for i, v in enumerate(value))
    for count in (1, 3):
        yield f"pending_changes_of({count})", statements.pending_changes_of(count)


def is_ddl(statement: Statement) -> bool:
    return re.match(r"\s*(CREATE|ALTER)\b", statement.template) is not None


def shared_tables() -> set[str]:
    found: set[str] = set()
    for _, statement in all_statements():
        found |= set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", statement.template))
    return found


def sql_literals(source: str) -> Iterator[str]:
    """The string literals of a module that are SQL (f-strings with their fixed parts)."""
    nodes = list(ast.walk(ast.parse(source)))
    parts = {id(part) for node in nodes if isinstance(node, ast.JoinedStr) for part in node.values}
    for node in nodes:
        if id(node) in parts:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                part.value
                for part in node.values
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            )
        else:
            continue
        if _SQL_START.match(text):
            yield text


def written_again(source: str, tables: set[str]) -> list[str]:
    """SQL literals of a backend that touch a shared table for no backend-specific reason."""
    return [
        text
        for text in sql_literals(source)
        if tables & set(_TABLE_USE.findall(text))
        and not any(marker in text for marker in BACKEND_SPECIFIC)
    ]


@pytest.mark.parametrize("module", BACKENDS)
def test_no_backend_writes_a_shared_statement_again(module: str) -> None:
    tables = shared_tables()
    assert {"drafts", "access", "updates", "events", "webhook_outbox"} <= tables
    assert written_again((STORE / module).read_text(), tables) == []


def test_the_scan_finds_a_statement_written_again() -> None:
    """The check above is not vacuous: a copied statement, plain or an f-string, is found."""
    source = (
        'A = "SELECT data FROM updates WHERE draft_id = ? ORDER BY version"\n'
        "B = f\"INSERT INTO events (data) VALUES ({'?'})\"\n"
        'C = "PRAGMA journal_mode=WAL"\n'
        'D = "SELECT pg_advisory_xact_lock($1)"\n'
        'E = """\n    UPDATE webhook_outbox SET status = $1"""\n'
    )
    assert len(written_again(source, shared_tables())) == 3


def test_no_statement_is_written_twice_in_the_statements_module() -> None:
    for dialect in (SQLITE, POSTGRES):
        rendered = [dialect.render(s) for _, s in all_statements()]
        assert len(rendered) == len(set(rendered))


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
def test_every_statement_renders_with_its_dialects_placeholders(dialect: Dialect) -> None:
    own, other = (r"\?(\d+)", r"\$\d") if dialect is SQLITE else (r"\$(\d+)", r"\?")
    for name, statement in all_statements():
        sql = dialect.render(statement)
        numbers = {int(n) for n in re.findall(own, sql)}
        assert numbers == set(range(1, len(statement.parameters) + 1)), name
        assert re.search(other, sql) is None, name
        assert re.search(r"(?<![:\w]):[A-Za-z_]", sql) is None, name  # every :name rendered
        assert "{" not in sql and "}" not in sql, name  # every token rendered
        if is_ddl(statement):
            assert statement.parameters == (), name


def test_parameters_are_numbered_once_each_in_order_of_first_use() -> None:
    statement = Statement(
        "SELECT :a, :b WHERE x = :a AND y::text = :c AND z = '10:30' AND w = {greatest}(1, :b)"
    )
    assert statement.parameters == ("a", "b", "c")
    assert SQLITE.render(statement) == (
        "SELECT ?1, ?2 WHERE x = ?1 AND y::text = ?3 AND z = '10:30' AND w = MAX(1, ?2)"
    )
    assert POSTGRES.render(statement).startswith("SELECT $1, $2 WHERE x = $1 AND y::text = $3")
    # A NUL's escape is read as U+FFFD's, else jsonb refuses the whole row (dialect.py).
    assert POSTGRES.render(Statement("{json:data.kind}")) == (
        r"(replace(replace(replace(data, '\\', chr(1)), '\u0000', '\ufffd'), chr(1), '\\')"
        r"::jsonb ->> 'kind')"
    )
    assert SQLITE.render(Statement("{json:data.kind}")) == "json_extract(data, '$.kind')"


def test_bad_templates_are_refused() -> None:
    with pytest.raises(KeyError, match="no_such_token"):
        SQLITE.render(Statement("SELECT {no_such_token}"))
    with pytest.raises(ValueError, match="no parameters"):
        POSTGRES.script(Statement("CREATE TABLE t (a {text} DEFAULT :a)"))
    with pytest.raises(ValueError, match="no draft"):
        statements.pending_changes_of(0)


async def test_every_statement_compiles_on_a_migrated_sqlite_store(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "draftsync.db")
    await store.close()
    db = sqlite3.connect(tmp_path / "draftsync.db")
    try:
        for name, statement in all_statements():
            if not is_ddl(statement):
                params = (None,) * len(statement.parameters)
                try:
                    db.execute("EXPLAIN " + SQLITE.render(statement), params).fetchall()
                except sqlite3.Error as exc:  # pragma: no cover - the message names it
                    pytest.fail(f"{name}: {exc}")
    finally:
        db.close()


async def test_every_statement_compiles_on_a_migrated_postgres_store(
    postgres: PostgresCluster,
) -> None:
    store = await PostgresStore.open(postgres.new_database(), max_size=1)
    try:
        async with store._pool.acquire() as db:
            for name, statement in all_statements():
                if not is_ddl(statement):
                    try:
                        await db.prepare(POSTGRES.render(statement))
                    except Exception as exc:  # pragma: no cover - the message names it
                        pytest.fail(f"{name}: {exc}")
    finally:
        await store.close()
