"""The few ways SQLite's SQL and PostgreSQL's differ, so that each statement is written once.

`server.store.statements` holds every statement both backends run, each one template; a
backend renders them with its `Dialect` when its module loads (not per call: commits are hot).
A template names its parameters (`:draft_id`) and marks a difference with a token (`{greatest}`);
rendering numbers the parameters by first appearance (SQLite `?1`, PostgreSQL `$1`: numbered
in both, so a parameter used twice is passed once) and replaces each token with this dialect's
text. The tokens are the whole list of differences; anything else must be common SQL:

    {greatest}        the larger of two values: MAX(a, b) / GREATEST(a, b)
    {bytewise}        compare text byte by byte: SQLite's default / COLLATE "C"
    {skip_locked}     a claim passes over rows another transaction holds (PostgreSQL only:
                      SQLite has one writer at a time)
    {for_update}      a statement's rows stay locked until its transaction ends (PostgreSQL
                      only: SQLite's write transaction, BEGIN IMMEDIATE, holds the database)
    {json:col.key}    the text at `key` of the JSON text in `col` (PostgreSQL: a NUL in it,
                      which its `text` cannot hold, as U+FFFD; see `_POSTGRES_JSON_TEXT`)
    {activity_join}, {last_version}, {last_modified}
                      a draft's (alias `d`) last version and its time: SQLite reads them from
                      the log (the newest row under `updates`' primary key), PostgreSQL from
                      `draft_activity`, kept by a trigger (see the backends' docstrings)
    {serial}, {text}, {integer}, {bigint}, {real}, {blob}, {without_rowid}
                      DDL: column types with the names each schema has always had, so that
                      a database made by an older draftsync compares equal to a new one

Why no query builder: ~40 statements and eleven tokens fit in this module and the next; a
dependency would be larger than both and hide the SQL that reviews and EXPLAIN need.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

__all__ = ["POSTGRES", "SQLITE", "Dialect", "Statement"]

# `:name`, but not PostgreSQL's `::type` cast nor a time like 10:30 (never in a template).
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_TOKEN = re.compile(r"\{(\w+)(?::(\w+)\.(\w+))?\}")


@dataclasses.dataclass(frozen=True)
class Statement:
    """One SQL statement in both dialects: `template` with `:name` parameters and tokens."""

    template: str

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameters' names in the order a caller passes their values (first use)."""
        return tuple(dict.fromkeys(_PARAMETER.findall(self.template)))


@dataclasses.dataclass(frozen=True)
class Dialect:
    """How one backend spells the differences listed in this module's docstring."""

    name: str
    placeholder: str  # followed by the parameter's number, from 1
    json_text: str  # a format string of `column` and `key`
    tokens: Mapping[str, str]

    def render(self, statement: Statement) -> str:
        """The statement's SQL for this backend (a KeyError names an unknown token)."""
        numbers = {name: i for i, name in enumerate(statement.parameters, start=1)}
        sql = _PARAMETER.sub(lambda m: f"{self.placeholder}{numbers[m[1]]}", statement.template)
        return _TOKEN.sub(self._token, sql)

    def script(self, *statements: Statement) -> str:
        """Statements without parameters (a migration's DDL) as one script."""
        for statement in statements:
            if statement.parameters:
                raise ValueError(f"a script takes no parameters: {statement.parameters}")
        return "\n".join(self.render(statement) for statement in statements)

    def _token(self, match: re.Match[str]) -> str:
        name, column, key = match.groups()
        if name == "json" and column is not None:
            return self.json_text.format(column=column, key=key)
        return self.tokens[name]


_LAST_UPDATE = "FROM updates u WHERE u.draft_id = d.id ORDER BY u.version DESC LIMIT 1"

SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    json_text="json_extract({column}, '$.{key}')",
    tokens={
        "greatest": "MAX",
        "bytewise": "",  # BINARY, SQLite's default collation
        "skip_locked": "",
        "for_update": "",
        "activity_join": "",
        "last_version": f"(SELECT u.version {_LAST_UPDATE})",
        "last_modified": f"(SELECT u.created_at {_LAST_UPDATE})",
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "text": "TEXT",
        "integer": "INTEGER",
        "bigint": "INTEGER",
        "real": "REAL",
        "blob": "BLOB",
        "without_rowid": " WITHOUT ROWID",
    },
)

# PostgreSQL's JSON parser refuses the escape of a NUL, `\u0000` ("unsupported Unicode escape
# sequence"), whenever it converts strings to `text`, and `->>` converts every string of the
# document (json and jsonb alike): one NUL anywhere in an event's data failed every read that
# looks into that draft's events. So the escape is read as U+FFFD's (`\ufffd`) first: a NUL in
# the key's own value comes back as U+FFFD (`text` cannot hold a NUL; SQLite's json_extract
# ends the text there instead); the stored row is untouched. Escaped backslashes are set aside
# as U+0001 meanwhile (never raw in valid JSON, which escapes control characters), so that
# `\\u0000`, a backslash then "u0000", stays as it is. Three `replace`s: linear in the text.
_POSTGRES_JSON_TEXT = (
    r"(replace(replace(replace({column}, '\\', chr(1)), '\u0000', '\ufffd'), chr(1), '\\')"
    r"::jsonb ->> '{key}')"
)

POSTGRES = Dialect(
    name="postgresql",
    placeholder="$",
    json_text=_POSTGRES_JSON_TEXT,
    tokens={
        "greatest": "GREATEST",
        "bytewise": ' COLLATE "C"',
        "skip_locked": " FOR UPDATE SKIP LOCKED",
        "for_update": "FOR UPDATE",
        "activity_join": "LEFT JOIN draft_activity act ON act.draft_id = d.id",
        "last_version": "act.version",
        "last_modified": "act.last_modified",
        "serial": "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "text": "text",
        "integer": "integer",
        "bigint": "bigint",
        "real": "double precision",
        "blob": "bytea",
        "without_rowid": "",
    },
)
