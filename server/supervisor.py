"""Supervision: every long-lived task has an owner, and no failure of one is silent.

A task started with `Supervisor.start` that raises an unexpected exception is logged with its
traceback, counted (`draftsync_component_crashes`), handed to its `on_crash` (which closes what
it affected with 1011: the rooms whose writes were in flight), and restarted after a short
pause. While any component has crashed within the last `HEALTH_WINDOW_SECONDS`, `/healthz`
answers 503 and names it, so a load balancer and an operator learn of it. A component that
crashes `MAX_CRASHES` times within `CRASH_WINDOW_SECONDS` is not restarted again: the process
stops with exit status 70 (EX_SOFTWARE) for its process manager, rather than limp on.

Failures caught where they happen (an error inside a commit made on the reader's turn) are
told with `report`, with the same effect on health.

`asyncio.TaskGroup` was the other candidate; it cancels every task when one fails, which is
right for a request, not for a server whose other rooms are fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from server import metrics

__all__ = [
    "CRASH_WINDOW_SECONDS",
    "EXIT_SOFTWARE",
    "HEALTH_WINDOW_SECONDS",
    "MAX_CRASHES",
    "RESTART_DELAY_SECONDS",
    "Crash",
    "Supervisor",
]

logger = logging.getLogger("draftsync.supervisor")

HEALTH_WINDOW_SECONDS = 30.0
CRASH_WINDOW_SECONDS = 60.0
MAX_CRASHES = 5
RESTART_DELAY_SECONDS = 0.2
EXIT_SOFTWARE = 70


@dataclass(frozen=True, slots=True)
class Crash:
    component: str
    error: str
    at: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._crashes: deque[Crash] = deque(maxlen=64)
        self.fatal: Crash | None = None  # the crash that stopped the process

    def start(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run `run()` as component `name` until stopped, restarting it after a crash."""
        self._tasks[name] = asyncio.create_task(self._supervise(name, run, on_crash), name=name)

    def report(self, component: str, error: BaseException) -> None:
        """A component's failure handled where it happened: logged, counted, health 503; the
        server stops (exit 70) once the component has failed MAX_CRASHES times in a window."""
        logger.error("%s failed: %r", component, error, exc_info=error)
        metrics.COMPONENT_CRASHES.labels(component=component).inc()
        now = time.monotonic()
        self._crashes.append(Crash(component, repr(error), now))
        recent = sum(
            c.component == component and now - c.at <= CRASH_WINDOW_SECONDS for c in self._crashes
        )
        if recent >= MAX_CRASHES and self.fatal is None:
            self._give_up(component)

    def recent_crashes(self) -> list[Crash]:
        """Crashes within the health window: non-empty means unhealthy."""
        now = time.monotonic()
        return [c for c in self._crashes if now - c.at <= HEALTH_WINDOW_SECONDS]

    @property
    def healthy(self) -> bool:
        return self.fatal is None and not self.recent_crashes()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervise(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        on_crash: Callable[[BaseException], None] | None,
    ) -> None:
        while True:
            try:
                await run()
                logger.info("%s stopped", name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.report(name, error)
                if on_crash is not None:
                    try:
                        on_crash(error)
                    except Exception:
                        logger.exception("%s: cleaning up after the crash failed", name)
            if self.fatal is not None:
                return  # it kept crashing: the server is stopping
            await asyncio.sleep(RESTART_DELAY_SECONDS)
            logger.warning("%s restarting", name)

    def _give_up(self, name: str) -> None:
        self.fatal = Crash(name, f"crashed {MAX_CRASHES} times in {CRASH_WINDOW_SECONDS:.0f} s")
        logger.critical("%s keeps crashing: stopping the server (exit %d)", name, EXIT_SOFTWARE)
        # A graceful stop (commit what was accepted, close with 1001); the CLI exits with 70.
        os.kill(os.getpid(), signal.SIGTERM)
