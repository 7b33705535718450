"""The editing traces in `bench/data/traces/` (josephg/editing-traces): loading and credits.

A trace is a list of user transactions, each a list of `[pos, delete_count, insert_text]`
patches counted in Unicode code points (format in the README next to the data). This module only
reads them and replays them on a plain `str` (the reference a CRDT replay is checked against);
`bench.replay` turns them into Yjs updates.

The data is CC BY 4.0: every published result names its authors (`credit`), as the README asks.
"""

from __future__ import annotations

import argparse
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_TRACES_DIR",
    "LICENCE",
    "SOURCE",
    "Patch",
    "Trace",
    "Txn",
    "credit",
    "load_trace",
    "reference_text",
    "traces_dir",
]

# bench/data/traces: copied byte for byte with their README (credits, licence) into the repo.
DEFAULT_TRACES_DIR = Path(__file__).resolve().parent / "data" / "traces"

SOURCE = "josephg/editing-traces @ 762fa6c51605c88a05ebe5c4b9d4540caca30b97"
LICENCE = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"

# Authors per trace name, from the README's provenance table.
_AUTHORS: dict[str, str] = {
    "automerge-paper": "Martin Kleppmann (automerge/automerge-perf), writing arXiv:1608.03960",
    "seph-blog1": "Joseph Gentle, the post 'CRDTs go brrr'",
    "friendsforever_flat": "Joseph Gentle et al. (linearized friendsforever)",
    "clownschool_flat": "Joseph Gentle et al. (linearized clownschool)",
    "rustcode": "Joseph Gentle, a Rust source file",
    "sveltecomponent": "Joseph Gentle, a Svelte component",
    "json-crdt-patch": "Vadim Dalecky / JSON Joy, the JSON CRDT Patch spec",
    "json-crdt-blog-post": "Vadim Dalecky / JSON Joy, two blog posts",
    "friendsforever": "Joseph Gentle et al., 2 users typing at once",
    "clownschool": "Joseph Gentle et al., users typing at once",
}

Patch = tuple[int, int, str]


def traces_dir(text: str) -> Path:
    """argparse type for --traces: a directory laid out as bench/data/traces/ is (sequential/
    and concurrent/), refused at once otherwise instead of a traceback from gzip later."""
    path = Path(text)
    if not ((path / "sequential").is_dir() or (path / "concurrent").is_dir()):
        raise argparse.ArgumentTypeError(
            f"{text} is not a traces directory (no sequential/ or concurrent/ in it)"
        )
    return path


@dataclass(frozen=True, slots=True)
class Txn:
    patches: tuple[Patch, ...]
    agent: int = 0
    parents: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Trace:
    name: str  # file name without .json.gz, e.g. "automerge-paper"
    kind: str  # "sequential" or "concurrent"
    txns: tuple[Txn, ...]
    end_content: str
    num_agents: int = 1

    @property
    def is_ascii(self) -> bool:
        """True when code-point positions are also UTF-8 byte offsets (pycrdt's unit)."""
        return self.end_content.isascii() and all(
            text.isascii() for txn in self.txns for _, _, text in txn.patches
        )

    def prefix(self, limit: int | None) -> Trace:
        """The first `limit` txns (sequential traces only: their end text is then recomputed)."""
        if limit is None or limit >= len(self.txns):
            return self
        if self.kind != "sequential":
            raise ValueError("only sequential traces can be cut: a concurrent prefix has no oracle")
        txns = self.txns[:limit]
        return Trace(self.name, self.kind, txns, reference_text(txns), self.num_agents)


def load_trace(path: Path) -> Trace:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        raw = json.load(f)
    kind = raw.get("kind", "sequential")
    if kind == "sequential" and raw.get("startContent", "") != "":
        raise ValueError(f"{path}: a non-empty startContent is not supported")
    txns = tuple(
        Txn(
            patches=tuple((int(p), int(d), str(s)) for p, d, s in txn["patches"]),
            agent=int(txn.get("agent", 0)),
            parents=tuple(int(i) for i in txn.get("parents", ())),
        )
        for txn in raw["txns"]
    )
    name = path.name.removesuffix(".json.gz")
    return Trace(name, kind, txns, raw["endContent"], int(raw.get("numAgents", 1)))


def reference_text(txns: tuple[Txn, ...]) -> str:
    """Replay sequential txns on a `str` (splice semantics): the oracle for a CRDT replay."""
    content = ""
    for txn in txns:
        for pos, delete_count, insert_text in txn.patches:
            content = content[:pos] + insert_text + content[pos + delete_count :]
    return content


def credit(name: str) -> str:
    return f"{name}: {_AUTHORS.get(name, 'see the traces README')}"
