"""`bench relay` J1 and C1: what joining costs, beside the peers, with the same Node clients.

    J1  join storm: a filler types a 5 MB draft (5,000 edits of 1,000 characters) and stays;
        then 100 fresh editors connect in the same tick (a reconnect storm after a deploy)
    C1  cold load: a filler types 20,000 one-character edits at 2,000/s and leaves; the server
        is stopped (SIGTERM) and started again on its data before each of 5 rounds, and one
        fresh editor connects

Per joiner: time from its provider's connect() to synced (its sync step 2 integrated), on the
client's clock; a joiner counts as delivered when it synced holding the whole draft. Server CPU
seconds and peak RSS cover the joins only (J1: from "go" to the last joiner synced; C1: the
restarted process, whose peak is its whole life). C1's idle RSS is the last restarted process's
(read as the first one's, 0.5 s after it listens), so that its after-load RSS, read from that
process, is compared with its own start. An in-memory server (y-websocket-node) keeps nothing
across a restart: it has no C1 row.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.nodeclient import ClientFailed, next_event, node_client
from bench.runtime import percentile
from bench.servers import ServerProc

__all__ = ["MEMORY_ONLY", "JoinScenario", "run_join"]

MEMORY_ONLY = ("y-websocket-node",)


@dataclass(frozen=True, slots=True)
class JoinScenario:
    name: str
    fill_edits: int
    fill_chunk: int  # characters an edit
    fill_rate: float  # edits/s; 0: as fast as the filler can
    joiners: int
    rounds: int
    restart: bool  # C1: a fresh server process on the same data before each round

    def describe(self) -> str:
        size = self.fill_edits * self.fill_chunk
        what = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{self.fill_edits:,} updates"
        if self.restart:
            rounds = self.rounds
            return f"cold load of a {what} draft: a fresh client after each of {rounds} restarts"
        return f"{self.joiners} clients join a {what} draft at once"

    def budget(self) -> float:
        fill = self.fill_edits / self.fill_rate if self.fill_rate else 60
        return 120 + fill + self.rounds * 90


async def _tell(process: asyncio.subprocess.Process, line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line.encode() + b"\n")
    await process.stdin.drain()


async def run_join(
    server: ServerProc, scenario: JoinScenario, directory: Path, room: str
) -> dict[str, Any]:
    """Drive one server (started) through the scenario; `server` is restarted for C1.
    Returns the figures of the row; the caller stops the server."""

    config = {
        "mode": "join",
        "urls": [server.url],
        "token": server.token,
        "protocol": server.protocol,
        "room": room,
        "fillEdits": scenario.fill_edits,
        "fillChunk": scenario.fill_chunk,
        "fillRate": scenario.fill_rate,
        "joiners": scenario.joiners,
        "rounds": scenario.rounds,
        "keepFiller": not scenario.restart,
        "connectSeconds": 60,
    }
    process = await node_client(config, directory / "client.log")
    cpu = 0.0
    peaks: list[float] = []
    idle: float | None = None
    try:
        async with asyncio.timeout(scenario.budget()):
            filled = await next_event(process, "filled")
            for _ in range(scenario.rounds):
                if scenario.restart:
                    await asyncio.to_thread(server.stop)
                    await asyncio.to_thread(server.start)
                    await asyncio.sleep(0.5)  # listening: let it settle before the clock
                    idle = server.rss_mb()  # this process's, as `bench relay` reads the first
                before = server.cpu_seconds()
                await _tell(process, "go")
                await next_event(process, "joined")
                cpu += server.cpu_seconds() - before
                peaks.append(server.peak_rss_mb())
            result = await next_event(process, "result")
            await process.wait()
    except TimeoutError:
        raise ClientFailed(f"{scenario.name}: no result within the bound") from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    length = int(result["length"])
    joins = [j for round_ in result["rounds"] for j in round_]
    times = [float(j["ms"]) for j in joins if j["ms"] is not None and j["length"] == length]
    return {
        "sent": scenario.fill_edits,
        "expected_deliveries": len(joins),
        "delivered": len(times),
        "delivered_pct": 100.0 * len(times) / len(joins) if joins else 0.0,
        "p50_ms": percentile(times, 50) if times else None,
        "p95_ms": percentile(times, 95) if times else None,
        "p99_ms": percentile(times, 99) if times else None,
        "max_ms": max(times, default=None),
        "write_seconds": float(filled["fill_seconds"]),
        "server_cpu_s": cpu,
        "peak_rss_mb": max(peaks, default=float("nan")),
        **({} if idle is None else {"idle_rss_mb": idle}),
        "draft_bytes": int(filled["update_bytes"]),
        "closes": int(result["closes"]),
        "close_codes": [],
        "convergent": len(times) == len(joins),
        "client_processes": 1,
        "clients_per_instance": [scenario.joiners],
    }
