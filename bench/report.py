"""Results as a text table on stdout and as JSON in `--out` (the PNGs are `bench.plots`).

A table is a list of `Column`s over row dicts, so the JSON keeps every raw field while the table
shows the few a reader compares; numbers are formatted for reading, the JSON keeps them exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Column", "format_table", "publish", "write_json"]


def _number(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    header: str
    fmt: Callable[[object], str] = _number

    def cell(self, row: Mapping[str, object]) -> str:
        return self.fmt(row.get(self.key))


def format_table(
    title: str, columns: Sequence[Column], rows: Sequence[Mapping[str, object]], footer: str = ""
) -> str:
    """A plain-text table: text columns left-aligned, the others right-aligned."""
    cells = [[c.cell(r) for c in columns] for r in rows]
    headers = [c.header for c in columns]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    numeric = [all(_looks_numeric(row[i]) for row in cells) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(headers))
    out = [title, rule, line(headers), rule, *(line(row) for row in cells), rule]
    if footer:
        out.append(footer)
    return "\n".join(out)


def _looks_numeric(text: str) -> bool:
    return text == "-" or text.replace(",", "").replace(".", "").replace("x", "").isdigit()


def write_json(path: Path, result: Mapping[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def publish(
    result: Mapping[str, object],
    out: Path,
    name: str,
    plot: Callable[[Any, Path], None],
    table: str,
) -> None:
    """What every bench command ends with: NAME.json and NAME.png in `out`, the table printed."""
    json_path, png_path = out / f"{name}.json", out / f"{name}.png"
    write_json(json_path, result)
    plot(result, png_path)
    print(table)
    print(f"\nwrote {json_path} and {png_path}")
