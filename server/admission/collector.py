"""The cyclic garbage collector of a serving process: frozen start, rarer full collections.

Every connection leaves a few hundred objects that live as long as it does (protocols, tasks,
frames: ~11 KB), so a connect storm grows the heap the collector tracks by ~450,000 objects per
3,000 connections. CPython 3.11 runs a full collection, which walks every tracked object, after
each 10 collections of the middle generation once the objects that reached the oldest one have
grown by a quarter since the last: in `bench relay` N3000 two of them ran during the connects,
~0.1 s of the server's ~1.3 s (measured by `gc.callbacks` with thread CPU time).

* What start made (modules, the app, the store, the listening sockets) lives as long as the
  process: `gc.freeze()` moves it out of every collection's way.
* A full collection waits for 100 middle-generation collections instead of 10 (and for the
  quarter's growth, as before): one per ~700,000 tracked objects the heap has grown by,
  instead of ~70,000. Collections of the young generations, which find the cycles a request
  leaves, are unchanged; a cycle that has reached the oldest generation waits longer to be
  freed (a room's unload collects at once, server/sync/memory.py).
"""

from __future__ import annotations

import gc

__all__ = ["FULL_COLLECTION_AFTER", "settle_collector"]

# Middle-generation collections between two full ones (CPython's default: 10).
FULL_COLLECTION_AFTER = 100


def settle_collector() -> None:
    """Once the server has started: collect, freeze what is there, space full collections."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)
