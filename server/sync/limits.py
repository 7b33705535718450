"""The room's check of a run of updates against `UpdateLimits`, before the doc applies it.

A keystroke (tens of bytes), or a run of them up to 4 KB, is never walked: the room asks
`UpdateLimits.needs_scan` first, which proves it cannot cross a limit (~1 us; 0.1 us an update
in a run of 128). A larger run is walked by `crdt.limits` off the event loop: the walk is
linear, but Python takes ~3 us a struct, so a run near the limits costs a few hundred
milliseconds that other drafts' clients must not wait for. A run of at most `INLINE_BYTES` (one
that writes `fields`) is walked in place: at most ~1,000 structs (each takes >= 2 bytes), a few
milliseconds at worst and tens of microseconds for a real one, less than a thread's round trip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container, Sequence

from crdt.errors import UpdateTooLarge
from crdt.limits import UpdateLimits, check_update_limits

__all__ = ["INLINE_BYTES", "check_run"]

logger = logging.getLogger("draftsync.limits")

INLINE_BYTES = 2048


async def check_run(
    updates: Sequence[bytes],
    limits: UpdateLimits,
    known_fields: Container[tuple[int, int]] = frozenset(),
) -> list[list[tuple[int, int]]] | None:
    """Raise UpdateTooLarge (close 4400) if the run would cross `limits`, UndecodableUpdate if
    an update is malformed. Call it when `limits.needs_scan(updates)`. Returns where each
    update's runs of clocks start, as the walk read them (`RunScan.starts`)."""
    size = sum(map(len, updates))
    try:
        if size <= INLINE_BYTES:
            return check_update_limits(updates, limits, known_fields)
        return await asyncio.to_thread(check_update_limits, updates, limits, known_fields)
    except UpdateTooLarge as error:
        logger.warning("update refused bytes=%d reason=%s", size, error)
        raise
