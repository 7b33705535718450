"""When a failed delivery is tried again: exponential, bounded, with jitter.

Jitter ("equal jitter": half the delay fixed, half random) so that deliveries that failed
together (a receiver that was down) do not all come back at the same instant.
"""

from __future__ import annotations

import random

__all__ = ["retry_delay"]


def retry_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...)."""
    delay = min(cap, base * 2 ** min(attempt - 1, 62))
    return delay / 2 + (rng or random).uniform(0, delay / 2)
