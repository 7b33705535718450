"""What a semantic field's rule makes of the writes one update brought to a key.

`decide` is pure: it gets the field, the value the server held before the update, the map
writes of the update (from `crdt.fields.FieldIndex`, in causal order, each flagged concurrent
or not) and the value Yjs ended up with, and answers what the server must write, if anything.

- A value of the wrong type is rejected: the server writes back the last good value.
- `transition`: a move that is not allowed from the value *its writer saw* is rejected.
- Rules act on concurrent writes only (design.md): a sequential write is the writer's intent
  and stands. Concurrent writes are settled by `max`, `min`, `precedence` (and `transition`,
  which settles concurrent allowed moves by precedence), or kept as Yjs chose them and opened as
  a conflict (`manual`); `lww` keeps Yjs's choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crdt.fields import MapWrite
from crdt.schema import Field, Rule
from crdt.updates import NO_VALUE

__all__ = ["Decision", "decide", "duplicate_positions"]


@dataclass(frozen=True, slots=True)
class Decision:
    value: Any = NO_VALUE  # what the key must hold; NO_VALUE: Yjs's value stands
    remove: bool = False  # no acceptable value exists: the key must go
    rejected: tuple[MapWrite, ...] = ()
    conflict: tuple[MapWrite, ...] = ()  # for `manual`: the concurrent writes to put to people
    conflict_with_before: bool = False  # ... and whether the value held before is a candidate
    # Yjs's value stands, yet the server writes it again as its own (see `decide`).
    reassert: bool = False

    @property
    def changes_doc(self) -> bool:
        return self.value is not NO_VALUE or self.remove


_STANDS = Decision()  # Yjs's value stands, nothing rejected, no conflict


def decide(field: Field, *, before: Any, writes: Sequence[MapWrite], current: Any) -> Decision:
    if len(writes) == 1:
        write = writes[0]
        # The commonest write (S5): one sequential write of a value the field accepts, that
        # Yjs kept. What the general case finds for it (valid, not stale: the value stands),
        # without its lists; `transition` judges the move, so it takes the general case.
        if (
            not write.concurrent
            and write.value is not NO_VALUE
            and field.rule is not Rule.TRANSITION
            and field.accepts(write.value)
            and _same(current, write.value)
        ):
            return _STANDS
    if field.rule is Rule.LWW and _lww_stands(field, before, writes, current):
        return _STANDS
    return _decide(field, before=before, writes=writes, current=current)


def _decide(field: Field, *, before: Any, writes: Sequence[MapWrite], current: Any) -> Decision:
    """The general case of `decide`, which its shortcuts must answer as (tests/crdt/
    test_fields_single.py compares them on random writes)."""
    valid: list[MapWrite] = []
    rejected: list[MapWrite] = []
    for write in writes:
        if write.value is NO_VALUE:
            continue  # a deleted item: nothing to judge
        if _allowed(field, write, before):
            valid.append(write)
        else:
            rejected.append(write)
    good_before = before is not NO_VALUE and field.accepts(before)
    # The update's writes of this key form chains; a chain's head is its writer's intent.
    # One concurrent link (often a Deleted item: the writer overwrote it offline) makes the
    # whole chain concurrent with the value the server held.
    heads = [w for w in valid if w.leaf]
    candidates = ([before] if good_before else []) + [w.value for w in heads]
    stale = any(w.concurrent for w in writes)

    if stale and heads and field.rule in (Rule.MAX, Rule.MIN, Rule.PRECEDENCE, Rule.TRANSITION):
        target = _settle(field, candidates)
    elif _acceptable(current, candidates + [w.value for w in valid]):
        target = current
    elif valid:
        target = valid[-1].value
    else:
        target = before if good_before else NO_VALUE

    conflict: tuple[MapWrite, ...] = ()
    if field.rule is Rule.MANUAL and stale and len({_hashable(c) for c in candidates}) > 1:
        conflict = tuple(heads)
    if target is NO_VALUE:
        remove = current is not NO_VALUE
        return Decision(remove=remove, rejected=tuple(rejected), conflict=conflict)
    value = NO_VALUE if _same(target, current) else target
    return Decision(
        value=value,
        rejected=tuple(rejected),
        conflict=conflict,
        conflict_with_before=bool(conflict) and good_before,
        # Concurrent heads whose settled value the doc shows already: the item showing it is
        # one writer's, who never saw the other heads, so that writer's next write would look
        # sequential (its origin is the key's winner) and stand alone, dropping a head it never
        # saw. Written again by the server, the value's item is the server's: every later
        # write of those writers is judged concurrent with it, and settled.
        reassert=value is NO_VALUE and stale and bool(heads) and field.rule is not Rule.LWW,
    )


def _lww_stands(field: Field, before: Any, writes: Sequence[MapWrite], current: Any) -> bool:
    """Whether the general case below answers `_STANDS` for an `lww` field: no write is
    rejected (every value a write holds is of the field's type) and Yjs's value is one of the
    candidates (a write's value, or a good value held before), so it stands; `lww` settles
    nothing, opens no conflict and reasserts nothing. A write that raced another (S5: a third
    of its writes, all concurrent) is decided so without the general case's lists."""
    if current is NO_VALUE:
        return False
    found = False
    for write in writes:
        value = write.value
        if value is NO_VALUE:
            continue  # a deleted item: nothing to judge
        if not field.accepts(value):
            return False
        found = found or _same(current, value)
    return found or (before is not NO_VALUE and field.accepts(before) and _same(current, before))


def duplicate_positions(values: Sequence[Any]) -> list[int]:
    """Positions of values seen earlier in the list (`union` keeps the first of each)."""
    seen: set[Any] = set()
    duplicates = []
    for position, value in enumerate(values):
        key = _hashable(value)
        if key in seen:
            duplicates.append(position)
        seen.add(key)
    return duplicates


def _allowed(field: Field, write: MapWrite, before: Any) -> bool:
    if not field.accepts(write.value):
        return False
    if field.rule is not Rule.TRANSITION:
        return True
    # What the writer saw: its origin's value; a first write saw the schema's initial value.
    saw = write.seen
    if saw is NO_VALUE and write.origin is not None:
        # The origin's value never reached us (the writer overwrote it offline, so it came
        # as Deleted): accept a value reachable from what the server held by allowed moves.
        start = before if before is not NO_VALUE else field.initial
        return start is None or _reachable(field, start, write.value)
    if saw is NO_VALUE:
        saw = field.initial
    if saw is None or _same(saw, write.value):
        return True
    return write.value in _moves(field, saw)


def _moves(field: Field, state: Any) -> tuple[Any, ...]:
    """The allowed moves from `state`; none from a list or an object: a client can write one
    (a value of the wrong type, rejected, but seen by its next write), the schema has no such
    state, and the transitions table cannot even look one up (unhashable)."""
    if isinstance(state, list | dict):
        return ()
    return field.transitions.get(state, ())


def _reachable(field: Field, start: Any, goal: Any) -> bool:
    seen = {_hashable(start)}
    frontier = [start]
    while frontier:
        state = frontier.pop()
        if _same(state, goal):
            return True
        for move in _moves(field, state):
            if move not in seen:
                seen.add(move)
                frontier.append(move)
    return False


def _settle(field: Field, candidates: list[Any]) -> Any:
    if field.rule is Rule.MAX:
        return max(candidates)
    if field.rule is Rule.MIN:
        return min(candidates)
    return max(candidates, key=field.rank)  # precedence, and concurrent allowed transitions


def _acceptable(current: Any, candidates: list[Any]) -> bool:
    return any(_same(current, c) for c in candidates)


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (_is_number(a) and _is_number(b) and a == b)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, dict | list) else value
