"""A bystander: a real editor on a draft of its own that keeps typing while another draft is
attacked (issue 21, "What must work" 1: "another client of another draft keeps editing with its
latency unchanged: its p99 during the attack stays within a few times its p99 before").

Two pycrdt clients join the bystander's draft: the writer types one character every `PACE`
seconds, whatever happens (an open loop: a stalled server does not slow the typing down, so
every edit sent during a stall waits for it and the stall shows in many samples, not in one);
each edit's round trip is the time from its send until the server has relayed it to the
reader. Its p99 is taken before the attack and while it runs (and for at least `SAMPLES`
edits, so that a one-message attack is measured over as many edits as the baseline).

The bound is `RATIO` x max(p99 before, `FLOOR`).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from pycrdt import Doc, Text

from tests.support.pycrdt_client import PycrdtClient, connect_synced

if TYPE_CHECKING:
    from tests.support.server_process import ServerProcess

__all__ = ["FLOOR", "PACE", "RATIO", "SAMPLES", "Bystander", "bystander_on", "p99"]

PACE = 0.02  # seconds between two edits' sends: 50 characters a second, a fast typist
SAMPLES = 150  # edits measured before, and at least as many during
RATIO = 5  # p99 during the attack at most this many times ...
FLOOR = 0.05  # ... p99 before, counted as at least this many seconds
TIMEOUT = 60  # an edit not relayed by then fails the test (the findings froze for 3-35 s)

T = TypeVar("T")


def p99(samples: list[float]) -> float:
    if len(samples) < 2:
        return max(samples)
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def _type_one(doc: Doc) -> None:
    title = doc.get("title", type=Text)
    title.insert(len(title), "x")


class Bystander:
    """The writer and reader of one draft; `before` and `during` hold round trips (seconds)."""

    def __init__(self, writer: PycrdtClient, reader: PycrdtClient) -> None:
        self.writer = writer
        self.reader = reader
        self.before: list[float] = []
        self.during: list[float] = []

    async def measure_before(self, count: int = SAMPLES) -> None:
        self.before = await self._typing(lambda typed: typed >= count)

    async def while_attacked(self, attack: Awaitable[T], *, at_least: int = SAMPLES) -> T:
        """`attack`'s result; the bystander types from its start until it has ended and at
        least `at_least` edits are sent (an attack that failed ends the typing at once)."""
        task = asyncio.ensure_future(attack)

        def done(typed: int) -> bool:
            if not task.done():
                return False
            return typed >= at_least or task.cancelled() or task.exception() is not None

        try:
            self.during = await self._typing(done)
        finally:
            if not task.done():
                task.cancel()
        return await task

    def assert_unchanged(self) -> None:
        """The issue's bound on the last `while_attacked` against `measure_before`."""
        before, during = p99(self.before), p99(self.during)
        figures = (
            f"bystander p99 before {before * 1000:.1f} ms, during {during * 1000:.1f} ms "
            f"({len(self.during)} edits, max {max(self.during) * 1000:.1f} ms)"
        )
        print(figures)  # shown with -s or -rA
        assert during <= RATIO * max(before, FLOOR), figures

    async def _typing(self, enough: Callable[[int], bool]) -> list[float]:
        """Type every `PACE` s until `enough(edits sent)`; each edit's round trip, in order."""
        sent: list[float] = []
        relayed: list[float] = []
        base = len(self.writer.text("title"))
        assert len(self.reader.text("title")) == base, "the reader is behind the writer"

        def seen() -> int:
            return len(self.reader.text("title")) - base

        def record() -> None:
            now = time.perf_counter()
            relayed.extend(now - sent[i] for i in range(len(relayed), min(seen(), len(sent))))

        async def arrived(count: int) -> None:
            await self.reader.wait_for(
                lambda: seen() >= count or self.reader.closed.is_set(), TIMEOUT
            )
            assert not self.reader.closed.is_set(), f"closed {self.reader.close_code}"
            record()

        async def read() -> None:
            while True:
                await arrived(len(relayed) + 1)

        reading = asyncio.ensure_future(read())
        try:
            while not enough(len(sent)):
                if reading.done():
                    await reading  # the reader failed: its error is the test's
                assert not self.writer.closed.is_set(), f"closed {self.writer.close_code}"
                started = time.perf_counter()
                sent.append(started)
                await self.writer.edit(_type_one)
                await asyncio.sleep(max(0.0, PACE - (time.perf_counter() - started)))
            await arrived(len(sent))
        finally:
            reading.cancel()
        return relayed


@contextlib.asynccontextmanager
async def bystander_on(server: ServerProcess, user: str = "carol") -> AsyncIterator[Bystander]:
    """A bystander on a new draft of `user`'s on `server`, connected and synced."""
    draft = f"bystander-{uuid.uuid4().hex[:12]}"
    writer = await connect_synced(server, draft, user)
    reader = await connect_synced(server, draft, user)
    try:
        yield Bystander(writer, reader)
    finally:
        await asyncio.gather(writer.disconnect(), reader.disconnect())
