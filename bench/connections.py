"""The `connections` scenario of `bench relay`: what an idle connection costs a server.

One Node process (`bench/node/client.mjs`, mode "connections") opens N y-websocket providers on
one room, at most 256 connecting at a time (so that the listen backlog is not what is measured),
presence off (each provider's awareness state is null: N idle viewers, not N^2 presence
messages). Reported: the accept rate (connections synced per second, first connect to last
synced), each connection's time from connect to synced (p50/p99), the server's RSS before the
first connect and once all are synced and idle (memory per connection = the delta / N), then one
character typed on the first connection and the time until every other one has it (fan-out
p50/max) and how many did. The client process then exits, closing every connection; `bench
relay` reads the server's RSS once the room has unloaded (its after-load figure, as every row's).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.nodeclient import next_event, node_client
from bench.runtime import percentile
from bench.servers import ServerProc

__all__ = ["SETTLE_SECONDS", "describe", "drive_connections", "rss_mb"]

# After the last sync, before memory is read: let the server finish the replies it queued.
SETTLE_SECONDS = 1.0


def rss_mb(server: ServerProc) -> float:
    """The server's resident memory now (VmRSS), MB."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def drive_connections(
    server: ServerProc,
    count: int,
    directory: Path,
    *,
    budget: float,
    settle: float = SETTLE_SECONDS,
) -> dict[str, object]:
    """Run the scenario against a started `server`; the row's figures. `settle`: the wait
    before each memory read (shorter in `bench relay --quick`)."""
    config = {
        "mode": "connections",
        "urls": [server.url],
        "token": server.token,
        "protocol": server.protocol,
        "slots": [f"connections-{server.port}"] * count,
        "connectSeconds": budget / 2,
        "drainSeconds": 30,
    }
    await asyncio.sleep(settle)
    before = rss_mb(server)
    cpu_before = server.cpu_seconds()
    process = await node_client(config, directory / "client-connections.log")
    try:
        async with asyncio.timeout(budget):
            synced = await next_event(process, "synced")
            connect_cpu = server.cpu_seconds() - cpu_before
            await asyncio.sleep(settle)
            idle = rss_mb(server)
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
            result = await next_event(process, "result")
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    sync_ms: list[float] = synced["sync_ms"]
    fanout: list[float] = result["fanout_ms"]
    connect_ms = float(synced["connect_ms"])
    return {
        "connections": count,
        "connect_ms": connect_ms,
        "accept_per_s": count / (connect_ms / 1000) if connect_ms > 0 else None,
        "sync_p50_ms": percentile(sync_ms, 50),
        "sync_p99_ms": percentile(sync_ms, 99),
        "connect_cpu_s": connect_cpu,
        "rss_before_mb": before,
        "rss_idle_mb": idle,
        "kb_per_connection": (idle - before) * 1024 / count,
        "fanout_p50_ms": percentile(fanout, 50) if fanout else None,
        "fanout_max_ms": max(fanout, default=None),
        "fanout_received": int(result["received"]),
        "fanout_receivers": int(result["receivers"]),
        "closes": int(result["closes"]),
        "close_codes": sorted({c for c in result["close_codes"] if c is not None}),
    }


def describe(count: int) -> str:
    return f"1 room x {count:,} idle connections (presence off), then 1 edit fanned out to all"
