"""Journal events: who changed which field, when, derived from updates (never their text).

Semantic fields give one event per change with the old and new value. Text is journaled the
way people read history, not per keystroke: one `FIELD_UPDATED` per user and text field per
*burst* of typing, with the characters inserted and deleted and the versions it spans. A burst
closes after `pause` seconds without a keystroke from that user in that field, or once it spans
`span` seconds. What was typed never enters an event: only counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from crdt.safe_json import dumps

__all__ = [
    "DEFAULT_PAUSE",
    "DEFAULT_SPAN",
    "OUTCOMES",
    "Burst",
    "EventType",
    "JournalEvent",
    "TextBursts",
]

DEFAULT_PAUSE = 2.0
DEFAULT_SPAN = 60.0


class EventType(StrEnum):
    DRAFT_CREATED = "DRAFT_CREATED"
    FIELD_UPDATED = "FIELD_UPDATED"
    CONFLICT_OPENED = "CONFLICT_OPENED"
    CONFLICT_RESOLVED = "CONFLICT_RESOLVED"
    VALUE_REJECTED = "VALUE_REJECTED"
    RESTORED = "RESTORED"
    ACCESS_CHANGED = "ACCESS_CHANGED"
    SESSION = "SESSION"  # an editing session ended: device, browser, start, duration; no content
    VERSION_NAMED = "VERSION_NAMED"  # a person named the version (a named version, its label)


OUTCOMES = frozenset(
    {
        EventType.CONFLICT_OPENED,
        EventType.CONFLICT_RESOLVED,
        EventType.VALUE_REJECTED,
        EventType.RESTORED,
    }
)
"""What a write's rules or a person's action made of it, told to the clients that hear of
events (Hocuspocus: `TOLD_EVENTS`) once committed, on every instance. Always stored with the
write's update, in its transaction: an instance that missed the telling reads them by version."""


@dataclass(frozen=True, slots=True)
class JournalEvent:
    type: EventType
    draft_id: str
    version: int
    user: str | None
    session: str | None
    client_id: int | None
    at: float
    data: dict[str, Any]

    def as_row(self) -> tuple[object, ...]:
        """The event as the stores' `events` rows hold it (data as compact JSON)."""
        return (
            self.draft_id,
            self.version,
            str(self.type),
            self.user,
            self.session,
            self.client_id,
            self.at,
            dumps(self.data),  # never raises: a row must not break its commit
        )


@dataclass(slots=True)
class Burst:
    user: str
    session: str
    client_id: int | None
    field: str
    from_version: int
    to_version: int
    started_at: float
    last_at: float
    inserted: int = 0
    deleted: int = 0

    def as_event(self, draft_id: str) -> JournalEvent:
        return JournalEvent(
            type=EventType.FIELD_UPDATED,
            draft_id=draft_id,
            version=self.to_version,
            user=self.user,
            session=self.session,
            client_id=self.client_id,
            at=self.last_at,
            data={
                "field": self.field,
                "kind": "text",
                "inserted": self.inserted,
                "deleted": self.deleted,
                "from_version": self.from_version,
                "to_version": self.to_version,
            },
        )


@dataclass(slots=True)
class TextBursts:
    """The open bursts of one draft, keyed by (user, field).

    `on_open` is called each time a burst opens: whoever closes bursts in time (the server's
    `JournalCloser`) needs telling once per burst, not once per keystroke.
    """

    draft_id: str
    pause: float = DEFAULT_PAUSE
    span: float = DEFAULT_SPAN
    on_open: Callable[[], None] | None = None
    _open: dict[tuple[str, str], Burst] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self._open)

    def feed(
        self,
        changes: dict[str, int],
        user: str,
        session: str,
        client_id: int | None,
        version: int,
        now: float,
        /,
    ) -> Sequence[JournalEvent]:
        """Count one update's text changes, length change per field (growth as inserted,
        shrinkage as deleted), into the user's bursts, emptying `changes`; return the events
        of the bursts this closed (by pause or span). Once per keystroke, which mostly
        continues its burst: positional, and then no event, list or call is made."""
        closed: Sequence[JournalEvent] = ()
        bursts = self._open
        # Popped, not iterated then cleared: clear() frees the dict's table, which the next
        # keystroke's count would allocate again.
        while changes:
            name, change = changes.popitem()
            key = (user, name)
            burst = bursts.get(key)
            if (
                burst is None
                or now - burst.last_at >= self.pause
                or now - burst.started_at >= self.span
            ):
                if burst is not None:
                    closed = [*closed, burst.as_event(self.draft_id)]
                burst = Burst(user, session, client_id, name, version, version, now, now)
                bursts[key] = burst
                if self.on_open is not None:
                    self.on_open()
            burst.to_version = version
            burst.last_at = now
            if change >= 0:
                burst.inserted += change
            else:
                burst.deleted -= change
        return closed

    def close_idle(self, now: float) -> list[JournalEvent]:
        idle = [
            key
            for key, burst in self._open.items()
            if now - burst.last_at >= self.pause or now - burst.started_at >= self.span
        ]
        return [self._open.pop(key).as_event(self.draft_id) for key in idle]

    def close_all(self) -> list[JournalEvent]:
        events = [burst.as_event(self.draft_id) for burst in self._open.values()]
        self._open.clear()
        return events

    def watermark(self, next_version: int) -> int:
        """Every text change below this version is journaled (or in no open burst)."""
        return min((b.from_version for b in self._open.values()), default=next_version)
