"""The room's check of each run of updates against `UpdateLimits`, before the doc applies it.

A keystroke (tens of bytes) is never walked: `UpdateLimits.needs_scan` proves it cannot cross a
limit, in well under a microsecond. A larger run is walked by `crdt.limits` off the event loop:
the walk is linear, but Python takes ~3 us a struct, so a run near the limits costs a few
hundred milliseconds that other drafts' clients must not wait for. A run of at most
`INLINE_BYTES` is walked in place: it holds at most ~1,000 structs (each takes >= 2 bytes), a
few milliseconds, less than a thread's round trip costs a paste.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from crdt.errors import UpdateTooLarge
from crdt.limits import UpdateLimits, check_update_limits

__all__ = ["INLINE_BYTES", "UpdateLimitCheck"]

INLINE_BYTES = 2048

logger = logging.getLogger("draftsync.limits")


class UpdateLimitCheck:
    def __init__(self, limits: UpdateLimits) -> None:
        self.limits = limits

    async def check(self, updates: Sequence[bytes]) -> None:
        """Raise UpdateTooLarge (close 4400) if the run would cross a limit, UndecodableUpdate
        if an update is malformed; return at once for small runs."""
        size = sum(len(update) for update in updates)
        if not self.limits.needs_scan(size):
            return
        try:
            if size <= INLINE_BYTES:
                check_update_limits(updates, self.limits)
            else:
                await asyncio.to_thread(check_update_limits, updates, self.limits)
        except UpdateTooLarge as error:
            logger.warning("update refused bytes=%d reason=%s", size, error)
            raise
