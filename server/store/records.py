"""What the stores read and write, the same for every backend (`Store`, `PostgresStore`).

Plain frozen records: the rooms, the journal and the REST API pass them around without knowing
which database holds the draft.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "FIRST_WATERMARK",
    "DraftRecord",
    "DraftState",
    "DraftSummary",
    "LoggedUpdate",
    "SavedMeta",
    "StoredEvent",
    "UpdateRecord",
    "opening_from_rows",
]

# A draft's journal watermark when none is recorded: every text change from version 1 on is
# still to be journaled (`Store.journal_watermark`).
FIRST_WATERMARK = 1


class UpdateRecord(NamedTuple):
    """One stored update. A named tuple, immutable as the other records are, because the
    room makes one per accepted write (every keystroke): a frozen dataclass's `__init__`
    sets each of its seven fields through `object.__setattr__` (~0.8 us a record, hot), a
    named tuple is built in one call (~0.25 us), and its fields are already a row's, in the
    row's order."""

    draft_id: str
    version: int
    data: bytes
    user: str
    session: str
    client_id: int | None
    created_at: float

    def as_row(self) -> tuple[object, ...]:
        """The `updates` row: the record itself (a tuple of exactly the row's columns)."""
        return self


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    version: int
    type: str
    user: str | None
    session: str | None
    client_id: int | None
    at: float
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoggedUpdate:
    version: int
    data: bytes
    user: str
    session: str
    client_id: int | None
    created_at: float


@dataclass(frozen=True, slots=True)
class DraftState:
    """What it takes to rebuild a draft: a snapshot (or nothing) and the updates after it."""

    snapshot: bytes | None
    snapshot_version: int
    tail: list[bytes]
    # The draft's journal watermark (`Store.journal_watermark`) when the store read it in the
    # same trip (SQLite's latest `load`, and `read_opening` on both); None when it did not.
    journal_watermark: int | None = None

    @property
    def version(self) -> int:
        return self.snapshot_version + len(self.tail)


def opening_from_rows(
    rows: Sequence[Sequence[Any]],
) -> tuple[str | None, DraftState | None]:
    """The stored role and the draft from the rows of `statements.OPENING` (either backend):
    (None, None) when the user has no stored role, since the statement then reads nothing else.
    """
    if not rows or rows[-1][0] != 3:
        return None, None
    role = str(rows[-1][3])
    snapshot_version, snapshot = 0, None
    if rows[0][0] == 0:
        snapshot_version, snapshot = int(rows[0][1]), bytes(rows[0][2])
    tail = [bytes(row[2]) for row in rows if row[0] == 1]
    watermark = next((int(row[1]) for row in rows if row[0] == 2), FIRST_WATERMARK)
    state = DraftState(
        snapshot=snapshot,
        snapshot_version=snapshot_version,
        tail=tail,
        journal_watermark=watermark,
    )
    return role, state


@dataclass(frozen=True, slots=True)
class DraftRecord:
    id: str
    owner: str
    created_at: float
    deleted_at: float | None  # set: a tombstone
    last_modified: float | None  # the last stored update; None before the first


@dataclass(frozen=True, slots=True)
class SavedMeta:
    """What a draft's content said at `version`, as `draft_meta` keeps it."""

    version: int
    fields_key: str  # which schema it was counted against
    word_count: int
    filled_fields: int
    open_conflicts: int


@dataclass(frozen=True, slots=True)
class DraftSummary:
    """One reachable draft: its row, the caller's role, its activity and saved metadata."""

    id: str
    role: str
    owner: str
    created_at: float
    version: int  # the last stored update
    last_modified: float
    meta: SavedMeta | None
