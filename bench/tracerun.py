"""One trace's updates, timed through a bare pycrdt Doc and through draftsync's room.

The per-txn Yjs updates are made first (`bench.replay`), then timed two ways:

    bare   apply them one at a time to a fresh pycrdt Doc: what the CRDT alone costs
           (and, as `bare_runs`, in the runs the room takes them in, one transaction each)
    room   hand them to a real Room (Store on a temp SQLite file, real CommitPipeline,
           Snapshotter at the server's defaults) the way the server's reader does, one
           Connection per trace agent plus one observer; the clock stops when the last update
           is committed. Twice:
             flood         as from a client that sends faster than the room applies: the frames
                           of one agent wait together, and the reader hands runs of up to
                           `MAX_RUN` of them to `Room.receive_run`
             frame by frame  each frame alone, as from a client typing slower than the room

The ratio room/bare (flood) says how much of the CRDT's speed survives the server's pipeline
when it is the bottleneck. What the frame-by-frame replay leaves in the store (one version per
update, as from a person typing) shows what a draft's history costs on disk: the log, and the
snapshots the server kept of it (at most `--snapshot-keep`, server/store/retention.py).
Every replay's final text is checked against the trace (room doc and what the observer received
too); a mismatch aborts the bench, since its figures would be void.

Between runs (frames) the feeder yields to the event loop, as the reader does while it awaits
the next WebSocket frame; without it no commit could start until the queue was full.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from pycrdt import Doc

from bench.commitstats import commit_totals
from bench.harness import StubSocket, open_room
from bench.replay import Replay, produce_updates, text_of
from bench.runtime import median, progress
from bench.traces import Trace
from crdt.protocol import SyncStep2, Update, decode_message, encode_message, update_payload
from server.sync.endpoint import MAX_RUN

__all__ = ["time_trace"]

BARE_RUNS = 3
_TICK = 1024  # progress-bar granularity inside timed loops


@dataclass(frozen=True, slots=True)
class _Spent:
    """What a replay took: wall-clock seconds, and CPU seconds of this process (all its
    threads: the WAL checkpoints too). Other processes on a shared machine stretch the first
    much more than the second, so the ratio of CPU times is the steadier of the two."""

    wall: float
    cpu: float

    @staticmethod
    def start() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    @classmethod
    def since(cls, started: tuple[float, float]) -> _Spent:
        return cls(time.perf_counter() - started[0], time.process_time() - started[1])

    @classmethod
    def median(cls, spent: list[_Spent]) -> _Spent:
        return cls(median([s.wall for s in spent]), median([s.cpu for s in spent]))


def _bare(replay: Replay) -> _Spent:
    """Time to apply every update to a fresh Doc (median of a few runs: it is short)."""
    runs = []
    for _ in range(BARE_RUNS):
        doc: Doc = Doc()
        apply = doc.apply_update
        started = _Spent.start()
        for update in replay.updates:
            apply(update)
        runs.append(_Spent.since(started))
        replay.check(text_of(doc), "the bare pycrdt doc")
    return _Spent.median(runs)


def _bare_runs(replay: Replay, longest: int) -> _Spent:
    """`_bare` with the room's transaction granularity: the same runs the flood replay hands
    the room (`_runs`), each applied inside one pycrdt transaction. The room gains from
    applying a run in one transaction (one commit of yrs' transaction, one observer call);
    this says how much of its ratio to `_bare` is that gain rather than a cheap pipeline."""
    runs = [updates for _, updates in _update_runs(replay, longest)]
    times = []
    for _ in range(BARE_RUNS):
        doc: Doc = Doc()
        apply = doc.apply_update
        started = _Spent.start()
        for run in runs:
            with doc.transaction():
                for update in run:
                    apply(update)
        times.append(_Spent.since(started))
        replay.check(text_of(doc), "the bare pycrdt doc (runs)")
    return _Spent.median(times)


def _observed_text(socket: StubSocket) -> str:
    """What a client that received the observer's frames would show."""
    doc: Doc = Doc()
    for frame in socket.frames:
        message = decode_message(frame)
        if isinstance(message, Update | SyncStep2):
            doc.apply_update(message.update)
    return text_of(doc)


def _update_runs(replay: Replay, longest: int) -> list[tuple[int, list[bytes]]]:
    """The updates grouped as the reader would take their frames: consecutive ones of one
    agent, `longest` at most, per run."""
    runs: list[tuple[int, list[bytes]]] = []
    for agent, update in zip(replay.agents, replay.updates, strict=True):
        if runs and runs[-1][0] == agent and len(runs[-1][1]) < longest:
            runs[-1][1].append(update)
        else:
            runs.append((agent, [update]))
    return runs


def _runs(replay: Replay, longest: int) -> list[tuple[int, list[bytes]]]:
    """The update frames of `_update_runs`, as a client sends them."""
    return [
        (agent, [encode_message(Update(update)) for update in updates])
        for agent, updates in _update_runs(replay, longest)
    ]


async def _room(
    replay: Replay, directory: Path, *, longest_run: int, show: bool, snapshots_kept: int
) -> tuple[_Spent, dict[str, object]]:
    """Time from the first message to the last commit, and the group-commit stats."""
    async with open_room(directory, snapshots_kept=snapshots_kept) as harness:
        senders = [
            (await harness.connect(f"agent{a}"))[0]
            for a in range(max(replay.agents, default=0) + 1)
        ]
        _, observer = await harness.connect("observer", keep_frames=True)
        assert harness.room is not None
        room = harness.room
        runs = [(senders[agent], updates) for agent, updates in _runs(replay, longest_run)]
        how = "flood" if longest_run > 1 else "frame by frame"
        bar = progress(
            desc=f"room {replay.trace.name} ({how})", total=len(replay.updates), enabled=show
        )
        before = commit_totals()
        started = _Spent.start()
        done = 0
        for conn, frames in runs:
            # the reader decodes each frame (all are sync updates here) as the server's does
            # (`server.sync.endpoint._run_in`), then hands the run over
            await room.receive_run(conn, [_payload(f) for f in frames])
            await asyncio.sleep(0)  # the server's reader awaits the next frame here
            done += len(frames)
            if done >= _TICK:
                bar.update(done)
                done = 0
        await harness.committed()
        elapsed = _Spent.since(started)
        stats = (commit_totals() - before).as_dict()
        bar.close()
        committed = sum(conn.committed for conn in senders)
        if committed != len(runs):
            raise AssertionError(f"{committed} of {len(runs)} runs were committed")
        replay.check(text_of(room.doc), "the room doc")
    replay.check(_observed_text(observer), "the observer's relayed frames")
    return elapsed, stats


def _payload(frame: bytes) -> bytes:
    """The update of a sync update frame, read as the server's reader reads a run's frames."""
    payload = update_payload(frame)
    if payload is None:
        payload = decode_message(frame).update  # type: ignore[union-attr]
    return payload


def _stored(database: Path) -> dict[str, object]:
    """The sizes of the log and of the snapshots kept in a replay's store."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        [(log_bytes,)] = db.execute("SELECT COALESCE(SUM(length(data)), 0) FROM updates")
        [(snapshots, snapshot_bytes)] = db.execute(
            "SELECT count(*), COALESCE(SUM(length(data)), 0) FROM snapshots"
        )
    return {
        "stored_log_mb": log_bytes / 1e6,
        "stored_snapshots": snapshots,
        "stored_snapshot_mb": snapshot_bytes / 1e6,
    }


def _row(
    replay: Replay,
    bare_spent: _Spent,
    bare_runs: _Spent,
    room_spent: _Spent,
    stats: dict[str, object],
    frame_by_frame: _Spent,
    stored: dict[str, object],
) -> dict[str, object]:
    n = len(replay.updates)
    trace = replay.trace
    bare, room = bare_spent.wall, room_spent.wall
    return {
        "trace": trace.name,
        "kind": trace.kind,
        "txns": len(trace.txns),
        "updates": n,
        "final_chars": len(trace.end_content),
        "bare_updates_per_s": n / bare,
        "room_updates_per_s": n / room,
        "ratio_room_to_bare": bare / room,
        "ratio_room_to_bare_cpu": bare_spent.cpu / room_spent.cpu,
        "bare_runs_updates_per_s": n / bare_runs.wall,
        "ratio_room_to_bare_runs_cpu": bare_runs.cpu / room_spent.cpu,
        "bare_us_per_update": 1e6 * bare / n,
        "room_us_per_update": 1e6 * room / n,
        "room_commits": stats["commits"],
        "room_mean_batch": stats["mean_batch"],
        "room_longest_run": MAX_RUN,
        "frame_by_frame_updates_per_s": n / frame_by_frame.wall,
        "ratio_frame_by_frame_to_bare": bare / frame_by_frame.wall,
        **stored,
        "verified": True,
    }


async def time_trace(
    trace: Trace, directory: Path, *, show: bool, snapshots_kept: int
) -> dict[str, object]:
    """Encode, then time bare and room; the result row (raises ReplayMismatch on a bad replay)."""
    replay = produce_updates(trace, show=show)
    bare = _bare(replay)
    bare_runs = _bare_runs(replay, MAX_RUN)
    room, stats = await _room(
        replay, directory / "flood", longest_run=MAX_RUN, show=show, snapshots_kept=snapshots_kept
    )
    frame_by_frame, _ = await _room(
        replay, directory / "frames", longest_run=1, show=show, snapshots_kept=snapshots_kept
    )
    stored = _stored(directory / "frames" / "draftsync.db")
    return _row(replay, bare, bare_runs, room, stats, frame_by_frame, stored)
