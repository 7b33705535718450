"""Reads of a pycrdt doc in a transaction of yrs' own, without pycrdt's `Transaction` wrapper.

Why: a `fields` write's review reads the key's value, and a raced write's gap check the doc's
state vector, each outside the run's transaction. `doc.transaction()` builds a pycrdt
`Transaction` (its leases, the doc's `_txn` slot, the origins table, the observers' error
list) around the yrs transaction: ~2.1 us for a map read where the yrs calls themselves
(create, read, commit, drop) take ~1.1, and 1.35 against 0.47 for the state vector
(docs/performance-notes.md, "`fields` writes: a review with no pycrdt transaction"). These
reads change nothing, so committing their transaction fires no observer: nothing of what the
wrapper does on exit has anything to do.

Where the wrapper does more than that, the read goes through it as before: a pycrdt
transaction is open (it is reused, as `doc.transaction()` reuses it; opening a second yrs
transaction on the doc would fail) or the doc allows multithreading (the wrapper takes the
doc's lock). pycrdt is pinned (0.14.13, as the room's `_doc`/`_txn` calls in
server/sync/core.py).
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map

from crdt.updates import NO_VALUE

__all__ = ["map_value", "state_vector"]


def state_vector(doc: Doc) -> bytes:
    """`doc.get_state()`."""
    if doc._txn is not None or doc._allow_multithreading:
        return doc.get_state()
    raw = doc._doc
    txn = raw.create_transaction()
    try:
        return raw.get_state(txn)
    finally:
        _end(txn)


def map_value(doc: Doc, shared: Map, key: str) -> Any:
    """The value of `key` in `shared` (a root map of `doc`) as `shared[key]` answers it;
    NO_VALUE if the map has no such key."""
    if doc._txn is not None or doc._allow_multithreading:
        with doc.transaction() as transaction:
            return _read(shared, transaction._txn, key)
    txn = doc._doc.create_transaction()
    try:
        return _read(shared, txn, key)
    finally:
        _end(txn)


def _end(txn: Any) -> None:
    """Commit a yrs transaction of our own (a read: no observer fires) and drop it, as pycrdt's
    `Transaction.__exit__` does."""
    try:
        txn.commit()
    finally:
        txn.drop()


def _read(shared: Map, txn: Any, key: str) -> Any:
    integrated = shared.integrated
    if not integrated.has(txn, key):
        return NO_VALUE
    # Shared types are wrapped as `Map.__getitem__` wraps them (JSON values come as is).
    return shared._maybe_as_type_or_doc(integrated.get(txn, key))
