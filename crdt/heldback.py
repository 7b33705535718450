"""What a doc holds back for clocks it lacks (yrs's pending store): found by its cost, shed.

Why: yrs keeps a delete of clocks past what the doc has, and a struct whose origin it lacks,
aside until those clocks come, and retries the whole pending delete set on every update it
applies after. pycrdt does not show that store and nothing bounds it: a client sending runs
of deletes of a client that does not exist (each within `--max-update-deletes`) made every
later keystroke on the draft cost ~14 ms on the event loop per 1,000,000 ranges held (152 ms
after 100 runs of 50,000), every draft's clients waiting.

Counting what each run leaves held costs ~0.2-3 us an update of every run (it needs a diff or
a read of each delete set: docs/performance-notes.md, "The held-back bound's cost"), a tenth
to a fifth of the room's merge ratio. This module measures the store's cost instead, now and
then: applying an empty update makes yrs retry all of it, so the CPU time that takes (~4 us
for a doc that holds nothing back, whatever its size) is the price every later update pays.
Past `RETRY_BUDGET` the doc is replaced by a copy of what it integrated (`without_held_back`):
an encode and a decode, ~3 ms for a 150 KB draft, paid only then.

Held structs (an item whose origin the doc lacks) are not retried on every update, so they
cost no time the probe would see; they cost memory (~190 bytes each in yrs: 6,000,000 from
one connection, each run within the update limits, took 1.2 GB). The gap check tells which
runs left some (crdt/gaps.py, `RunCheck.HELD`: only runs that are not cleared by its fast
paths, which honest ones are), and past `HELD_BYTES` of such runs the doc is copied too.

When: after every run large enough to be walked by the update limits (> 4 KB: up to 50,000
delete ranges), after a run that left structs held, and every `PROBE_EVERY_RUNS` runs (each
≤ 4 KB: ≤ 2,048 ranges), so the store stays under ~130,000 ranges, ~2 ms an update at worst;
but not again until a pause 50 times the last copy's time has passed (`SHED_PAUSE_FACTOR`),
since a copy is linear in the draft.

What the copy drops was never visible and never stored: the room stores and relays what yrs
reports a transaction integrated, and a held-back part is in no report until it integrates.
Honest clients hold back nearly nothing (every client of a draft syncs through the server, so
it rarely deletes or extends what the server lacks); if one did, its sync step 1 on reconnect
shows the server lacking those clocks and it sends them again.
"""

from __future__ import annotations

import time

from pycrdt import Doc

__all__ = [
    "HELD_BYTES",
    "PROBE_EVERY_RUNS",
    "RETRY_BUDGET",
    "SHED_PAUSE_FACTOR",
    "retry_cost",
    "without_held_back",
]

RETRY_BUDGET = 0.001
"""CPU seconds a doc's held-back store may add to each update applied to it: ~70,000 delete
ranges. A doc that holds nothing back retries in ~4 us, so a false alarm (CPU time counts no
preemption) needs a pause 250 times that inside one empty apply; its only cost is a copy."""

HELD_BYTES = 1 << 20
"""Bytes of runs that left structs held a doc may take before it is copied: ~20 MB of yrs's
memory at the attack's ~20 bytes held per byte sent. Honest clients hold back nothing (every
client of a draft syncs through the server), save in rare races that a copy only delays: the
sender's sync step 1 on reconnect shows the server lacking those structs, and it resends."""

PROBE_EVERY_RUNS = 64
"""Runs a room applies between two probes of its doc's held-back store, at most."""

SHED_PAUSE_FACTOR = 50
"""After a copy that took t seconds, the doc is not copied again for SHED_PAUSE_FACTOR * t
seconds: copies take at most 2 % of the event loop, whatever a writer sends. A copy is linear
in the draft (136 ms for a 7.4 MB one of 50,000 items): without the pause, a writer of such a
draft could have it copied every two runs of held deletes. Meanwhile what is held grows, and
each update pays its retry (~14 ms a million ranges) until the next copy."""

_EMPTY_UPDATE = b"\x00\x00"  # no struct groups, no delete set: yrs integrates nothing


def retry_cost(doc: Doc) -> float:
    """CPU seconds yrs spends retrying what `doc` holds back, as each update applied to it
    does: the time of applying an empty update. The doc's observers are not called (the
    transaction changes nothing); call it with no transaction open."""
    started = time.thread_time()
    doc.apply_update(_EMPTY_UPDATE)
    return time.thread_time() - started


def without_held_back(doc: Doc) -> Doc:
    """A doc with everything `doc` integrated and nothing it holds back, under the same
    client id (the server's own writes continue its clocks). yrs encodes no pending part."""
    copy = Doc(client_id=doc.client_id)
    copy.apply_update(doc.get_update())
    return copy
