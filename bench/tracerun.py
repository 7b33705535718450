"""One trace's updates, timed through a bare pycrdt Doc and through draftsync's room.

The per-txn Yjs updates are made first (`bench.replay`), then timed two ways:

    bare   apply them one at a time to a fresh pycrdt Doc: what the CRDT alone costs
    room   send them as `Update` messages into a real Room (Store on a temp SQLite file, real
           CommitPipeline, Snapshotter at the server's defaults), one Connection per trace agent
           plus one observer; the clock stops when the last update is committed

The ratio room/bare says how much of the CRDT's speed survives the server's pipeline. Every
replay's final text is checked against the trace (room doc and what the observer received too);
a mismatch aborts the bench, since its figures would be void.

The sender yields to the event loop after each message, as the server's reader does while it
awaits the next WebSocket frame; without it no commit could start until the queue was full.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pycrdt import Doc

from bench.commitstats import commit_totals
from bench.harness import StubSocket, open_room
from bench.replay import Replay, produce_updates, text_of
from bench.runtime import median, progress
from bench.traces import Trace
from crdt.protocol import SyncStep2, Update, decode_message

__all__ = ["time_trace"]

BARE_RUNS = 3
_TICK = 1024  # progress-bar granularity inside timed loops


def _bare(replay: Replay) -> float:
    """Seconds to apply every update to a fresh Doc (median of a few runs: it is short)."""
    runs = []
    for _ in range(BARE_RUNS):
        doc: Doc = Doc()
        apply = doc.apply_update
        started = time.perf_counter()
        for update in replay.updates:
            apply(update)
        runs.append(time.perf_counter() - started)
        replay.check(text_of(doc), "the bare pycrdt doc")
    return median(runs)


def _observed_text(socket: StubSocket) -> str:
    """What a client that received the observer's frames would show."""
    doc: Doc = Doc()
    for frame in socket.frames:
        message = decode_message(frame)
        if isinstance(message, Update | SyncStep2):
            doc.apply_update(message.update)
    return text_of(doc)


async def _room(replay: Replay, directory: Path, *, show: bool) -> tuple[float, dict[str, object]]:
    """Seconds from the first message to the last commit, and the group-commit stats."""
    async with open_room(directory) as harness:
        senders = [
            (await harness.connect(f"agent{a}"))[0]
            for a in range(max(replay.agents, default=0) + 1)
        ]
        _, observer = await harness.connect("observer", keep_frames=True)
        assert harness.room is not None
        room = harness.room
        messages = [
            (senders[a], Update(u)) for a, u in zip(replay.agents, replay.updates, strict=True)
        ]
        bar = progress(desc=f"room {replay.trace.name}", total=len(messages), enabled=show)
        before = commit_totals()
        started = time.perf_counter()
        for i, (conn, message) in enumerate(messages, 1):
            await room.receive(conn, message)
            await asyncio.sleep(0)  # the server's reader awaits the next frame here
            if i % _TICK == 0:
                bar.update(_TICK)
        await harness.committed()
        elapsed = time.perf_counter() - started
        stats = (commit_totals() - before).as_dict()
        bar.close()
        committed = sum(conn.committed for conn in senders)
        if committed != len(messages):
            raise AssertionError(f"{committed} of {len(messages)} updates were committed")
        replay.check(text_of(room.doc), "the room doc")
    replay.check(_observed_text(observer), "the observer's relayed frames")
    return elapsed, stats


def _row(replay: Replay, bare: float, room: float, stats: dict[str, object]) -> dict[str, object]:
    n = len(replay.updates)
    trace = replay.trace
    return {
        "trace": trace.name,
        "kind": trace.kind,
        "txns": len(trace.txns),
        "updates": n,
        "final_chars": len(trace.end_content),
        "bare_updates_per_s": n / bare,
        "room_updates_per_s": n / room,
        "ratio_room_to_bare": bare / room,
        "bare_us_per_update": 1e6 * bare / n,
        "room_us_per_update": 1e6 * room / n,
        "room_commits": stats["commits"],
        "room_mean_batch": stats["mean_batch"],
        "verified": True,
    }


async def time_trace(trace: Trace, directory: Path, *, show: bool) -> dict[str, object]:
    """Encode, then time bare and room; the result row (raises ReplayMismatch on a bad replay)."""
    replay = produce_updates(trace, show=show)
    bare = _bare(replay)
    room, stats = await _room(replay, directory, show=show)
    return _row(replay, bare, room, stats)
