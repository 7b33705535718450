"""`bench durability`: writers flood a room, the server is `kill -9`ed mid-stream and restarted.

Three real Yjs clients (`bench/node/client.mjs`, mode "crash") join one room; two flood it, all
three record what they receive. Shortly after the flood starts the server process gets SIGKILL;
on the first close every client stops (no reconnect: it would re-upload what the server lost).
An edit is *relayed* when some other client had received it (Yjs state vectors: a client's items
arrive in clock order, so "received up to clock n" is exact). The server is restarted on the same
data, a fresh client syncs the room, and its state vector tells which relayed edits survived.

The promise under test (design.md, "durable before visible"): 100 % for draftsync's default.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.nodeclient import QUICK_WARM_UP_EDITS, ClientFailed, next_event, node_client
from bench.plots import plot_crash
from bench.report import Column, format_table, publish
from bench.runtime import environment, progress
from bench.servers import NODE_DIR, ServerProc, node_ready

__all__ = ["CRASH_SERVERS", "CrashOptions", "run_crash"]

CRASH_SERVERS = ("draftsync", "draftsync-relaxed", "pycrdt-websocket")
EDIT_CAP = 1_000_000  # per writer; the kill comes long before


@dataclass(frozen=True, slots=True)
class CrashOptions:
    out: Path
    quick: bool
    servers: tuple[str, ...]
    kill_after: float  # seconds of flooding before SIGKILL
    repeats: int
    progress: bool


async def _bounded(process: asyncio.subprocess.Process, until: str, seconds: float) -> dict:
    try:
        return await asyncio.wait_for(next_event(process, until), seconds)
    except (TimeoutError, ClientFailed):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise


async def _one(name: str, kill_after: float, directory: Path, quick: bool) -> dict[str, object]:
    room = f"crash-{uuid.uuid4().hex[:8]}"
    server = ServerProc(name, directory)
    await asyncio.to_thread(server.start)
    try:
        common = {"url": server.url, "token": server.token, "rooms": [room], "connectSeconds": 30}
        flood_config = {**common, "mode": "crash", "clients": 3, "edits": EDIT_CAP}
        if quick:
            flood_config["warmUpEdits"] = QUICK_WARM_UP_EDITS
        flood = await node_client(flood_config, directory / "client-flood.log")
        await _bounded(flood, "writing", 60)
        await asyncio.sleep(kill_after)
        await asyncio.to_thread(server.kill)
        seen = await _bounded(flood, "result", 60)
        await flood.wait()
        await asyncio.to_thread(server.start)
        reader = await node_client({**common, "mode": "read", "clients": 1}, directory / "r.log")
        stored = await _bounded(reader, "result", 60)
        await reader.wait()
    finally:
        await asyncio.to_thread(server.stop)
    relayed: dict[str, int] = seen["relayed"]  # type: ignore[assignment]
    state: dict[str, int] = stored["state"]  # type: ignore[assignment]
    sent: dict[str, int] = seen["sent"]  # type: ignore[assignment]
    writers = list(sent)
    relayed_total = sum(relayed.get(c, 0) for c in writers)
    survived = sum(min(relayed.get(c, 0), state.get(c, 0)) for c in writers)
    return {
        "sent": sum(sent.values()),
        "relayed": relayed_total,
        "survived": survived,
        "stored": sum(state.get(c, 0) for c in writers),
        "flood_seconds": seen["seconds"],
    }


async def _measure(options: CrashOptions) -> dict[str, object]:
    if not node_ready():
        raise RuntimeError(f"no node_modules in {NODE_DIR}: run `npm ci` there (make bench-node)")
    env = environment()
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in options.servers}
    steps = progress(
        desc="kill -9",
        total=options.repeats * len(options.servers),
        unit="run",
        enabled=options.progress,
    )
    with tempfile.TemporaryDirectory(prefix="draftsync-crash-") as tmp:
        for repeat in range(options.repeats):
            for name in options.servers:
                where = Path(tmp) / f"{name}-{repeat}"
                runs[name].append(await _one(name, options.kill_after, where, options.quick))
                steps.update(1)
    steps.close()
    rows = []
    for name, done in runs.items():
        relayed = sum(int(r["relayed"]) for r in done)  # type: ignore[call-overload]
        survived = sum(int(r["survived"]) for r in done)  # type: ignore[call-overload]
        rows.append(
            {
                "server": name,
                "runs": len(done),
                "sent": sum(int(r["sent"]) for r in done),  # type: ignore[call-overload]
                "relayed": relayed,
                "survived": survived,
                "lost": relayed - survived,
                "survived_pct": 100.0 * survived / relayed if relayed else 100.0,
                "per_run": done,
            }
        )
    return {
        "bench": "durability",
        "quick": options.quick,
        "environment": env,
        "settings": {
            "servers": list(options.servers),
            "kill_after_s": options.kill_after,
            "repeats": options.repeats,
            "writers": 2,
            "observers": 1,
        },
        "rows": rows,
    }


def _table(result: dict[str, object]) -> str:
    return format_table(
        "Durability: kill -9 mid-flood, restart, what survived of what others had received",
        [
            Column("server", "server"),
            Column("runs", "runs"),
            Column("sent", "sent"),
            Column("relayed", "relayed"),
            Column("survived", "survived"),
            Column("lost", "lost"),
            Column("survived_pct", "survived %"),
        ],
        result["rows"],  # type: ignore[arg-type]
        footer="relayed: edits some other client had received before the kill (goal: 100 % "
        "survive)",
    )


async def run_crash(options: CrashOptions) -> dict[str, object]:
    unknown = set(options.servers) - set(CRASH_SERVERS)
    if unknown:
        raise ValueError(f"unknown servers {sorted(unknown)}; known: {', '.join(CRASH_SERVERS)}")
    result = await _measure(options)
    publish(result, options.out, "durability", plot_crash, _table(result))
    return result
